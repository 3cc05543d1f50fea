"""The email bench's jobs: a realistic ~8 KB HTML newsletter with a dozen links, text part
and personalised fields, pre-loaded on JetStream; and waiting for the gateway to drain them."""

from __future__ import annotations

import asyncio
import time
import uuid

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from shared import bus


def newsletter() -> tuple[str, str, str]:
    items = []
    for i in range(10):
        items.append(
            f'<tr><td style="padding:12px 24px;font-family:Helvetica,Arial,sans-serif;font-size:15px;'
            f'line-height:22px;color:#333333"><h2 style="margin:0 0 8px;font-size:18px;color:#111111">'
            f'Story {i + 1}: what changed this week</h2><p style="margin:0 0 8px">Lorem ipsum dolor '
            f'sit amet, consectetur adipiscing elit. Integer nec odio praesent libero, sed cursus ante '
            f'dapibus diam. Sed nisi nulla quis sem at nibh elementum imperdiet.</p>'
            f'<a href="https://www.example.com/news/{i + 1}?utm_source=herald&amp;utm_medium=email'
            f'&amp;utm_campaign=weekly" style="color:#0066cc">Read more</a></td></tr>')
    html = (
        '<!doctype html><html><head><meta charset="utf-8"><title>Weekly</title></head>'
        '<body style="margin:0;padding:0;background:#f4f4f4"><table width="100%" cellpadding="0" '
        'cellspacing="0"><tr><td align="center"><table width="600" cellpadding="0" cellspacing="0" '
        'style="background:#ffffff"><tr><td style="padding:24px;font-family:Helvetica,Arial,'
        'sans-serif;font-size:22px">Hello {{ first_name }} {{ last_name }},</td></tr>'
        + "".join(items)
        + '<tr><td style="padding:24px;font-size:12px;color:#888888">You get this email as a '
        'member of {{ company | default("our list") }} in {{ city }}. <a href="https://www.example.com/'
        'preferences">Preferences</a> | <a href="{{ unsubscribe_url }}">Unsubscribe</a></td></tr>'
        '</table></td></tr></table></body></html>')
    text = ("Hello {{ first_name }},\n\nThis week's stories: https://www.example.com/news\n\n"
            "Unsubscribe: {{ unsubscribe_url }}\n")
    return "Weekly news for {{ first_name }}", text, html


def job(i: int, campaign: str) -> e.MessageJob:
    subject, text, html = newsletter()
    return e.MessageJob(
        message_id=str(uuid.uuid4()), campaign_id=campaign, workspace_id="ws-bench",
        channel=c.CHANNEL_EMAIL, attempt=1, sender="Herald Weekly <news@example.com>",
        to=f"reader{i:06d}@example.com", contact_id=f"ct-{i}", variant="A",
        fields={"first_name": f"Reader{i}", "last_name": "Example", "city": "Leeds",
                "company": "Example Ltd"},
        subject=subject, text=text, html=html)


async def preload(nats_url: str, n: int, campaign: str) -> None:
    nc = await bus.connect(nats_url)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    items = []
    for i in range(n):
        j = job(i, campaign)
        items.append((bus.SUBJECT_EMAIL_JOBS, j, f"{j.message_id}:1"))
    for k in range(0, n, 2000):
        await bus.publish_many(js, items[k:k + 2000], concurrency=256)
    await nc.close()


async def drained(nats_url: str, timeout: float) -> float:
    nc = await bus.connect(nats_url)
    js = nc.jetstream()
    t0 = time.perf_counter()
    try:
        while time.perf_counter() - t0 < timeout:
            try:
                info = await js.consumer_info(bus.JOBS_STREAM, "email")
                if info.num_pending == 0 and info.num_ack_pending == 0:
                    return time.perf_counter() - t0
            except Exception:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("email jobs not drained in time")
    finally:
        await nc.close()


async def reset_consumer(nats_url: str) -> None:
    """No email consumer and no jobs left: the next gateway starts from nothing."""
    nc = await bus.connect(nats_url)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    try:
        await js.delete_consumer(bus.JOBS_STREAM, "email")
    except Exception:
        pass
    await js.purge_stream(bus.JOBS_STREAM)
    await nc.close()
