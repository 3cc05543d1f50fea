"""RecipientService commands: contacts (import from CSV, list, show), categories and the
suppression list."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as rpb

from cli import importer
from cli.commands import add, category_ids, collect, more_hint, paging
from cli.connect import Clients
from cli.output import Output, enum, table, ts

CHANNELS = {"sms": c.CHANNEL_SMS, "email": c.CHANNEL_EMAIL}


def kind_name(kind: int) -> str:
    """SUPPRESSION_KIND_OPTED_OUT -> OPTED_OUT."""
    return rpb.SuppressionKind.Name(kind).removeprefix("SUPPRESSION_KIND_")


async def import_contacts(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    path = Path(args.file)
    cats = await category_ids(cl)
    for name in args.create_category:
        if name not in cats:
            cat = await cl.recipients.CreateCategory(rpb.CreateCategoryRequest(name=name))
            cats[cat.name] = cats[cat.id] = cat.id
    extra = [*args.category, *args.create_category]
    missing = [x for x in extra if x not in cats]
    if missing:
        out.error(f"no category {missing[0]!r} in the workspace (herald categories create NAME, "
                  f"or --create-category)")
        return 1

    def progress(rep: importer.ImportReport) -> None:
        if not out.json:
            out.print(f"  {rep.rows} rows read, {rep.rejected} refused before sending",
                      highlight=False)

    try:
        rep = await importer.import_csv(path, cl.recipients.ImportContacts, cats,
                                        list(dict.fromkeys(cats[x] for x in extra)),
                                        max(1, min(args.batch_size, 10000)), progress,
                                        args.request_id)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        out.error(str(exc))
        return 1
    if out.json:
        out.emit(rep.as_dict())
    else:
        shown = rep.errors[:args.max_errors]
        for e in shown:
            out.error(f"{path}: line {e.line}: {e.error}")
        hidden = rep.rejected - len({e.line for e in shown})
        if hidden > 0:
            out.error(f"... and {hidden} more rejected rows")
        same = f" ({rep.unchanged} of the updated rows changed nothing)" if rep.unchanged else ""
        out.print(f"imported {path}: {rep.rows} rows, {rep.created} created, {rep.updated} updated, "
                  f"{rep.rejected} rejected{same}", highlight=False, soft_wrap=True)
    return 2 if rep.rejected else 0


async def list_contacts(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    flt = args.filter
    if args.category:
        cats = await category_ids(cl)
        flt = " ".join(x for x in (flt, f"category_id={cats.get(args.category, args.category)}") if x)
    items, resp = await collect(cl.recipients.ListContacts,
                                rpb.ListContactsRequest(filter=flt, order_by=args.order_by),
                                "contacts", args)
    if out.json:
        out.emit(items)
        return 0
    wide = out.console.width >= 120
    cols = ["id", "address", "name", *(("external id", "categories") if wide else ())]
    rows = [[ct.id, ct.phone or ct.email or "-", " ".join(x for x in (ct.first_name, ct.last_name) if x),
             *((ct.external_id, str(len(ct.category_ids))) if wide else ())] for ct in items]
    out.print(table(f"contacts ({len(items)} of {resp.total_size if resp else 0})", cols,
                    ids=("id",), rows=rows))
    if hint := more_hint(resp, args):
        out.print(hint, soft_wrap=True)
    return 0


async def show_contact(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    ct = await cl.recipients.GetContact(rpb.GetContactRequest(id=args.id))
    if out.json:
        out.emit(ct)
        return 0
    names = {v: k for k, v in (await category_ids(cl)).items() if k != v}
    rows = [["id", ct.id], ["phone", ct.phone], ["email", ct.email], ["first name", ct.first_name],
            ["last name", ct.last_name], ["external id", ct.external_id], ["language", ct.language],
            ["categories", ", ".join(names.get(x, x) for x in ct.category_ids)],
            ["created", ts(ct.created_at)]]
    rows += [[f"field {k}", v] for k, v in sorted(ct.fields.items())]
    out.print(table(f"contact {ct.id}", ("field", "value"), ids=("value",), rows=rows))
    return 0


async def list_categories(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    items, _ = await collect(cl.recipients.ListCategories, rpb.ListCategoriesRequest(),
                             "categories", args)
    if out.json:
        out.emit(items)
        return 0
    out.print(table(f"categories ({len(items)})", ("id", "name", "contacts"), ids=("id",),
                    right=("contacts",), rows=[[x.id, x.name, str(x.contacts_count)] for x in items]))
    return 0


async def create_category(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    cat = await cl.recipients.CreateCategory(rpb.CreateCategoryRequest(
        name=args.name, request_id=args.request_id))
    if out.json:
        out.emit(cat)
    else:
        out.print(f"category {cat.name}: {cat.id}", soft_wrap=True, markup=False)
    return 0


async def rename_category(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    cats = await category_ids(cl)
    cat = await cl.recipients.UpdateCategory(rpb.UpdateCategoryRequest(
        category=rpb.Category(id=cats.get(args.category, args.category), name=args.name),
        update_mask={"paths": ["name"]}, request_id=args.request_id))
    if out.json:
        out.emit(cat)
    else:
        out.print(f"category {cat.id} renamed to {cat.name} ({cat.contacts_count} contacts)",
                  soft_wrap=True, markup=False)
    return 0


async def delete_category(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    cats = await category_ids(cl)
    cat = await cl.recipients.DeleteCategory(rpb.DeleteCategoryRequest(
        id=cats.get(args.category, args.category), request_id=args.request_id))
    if out.json:
        out.emit(cat)
    else:
        out.print(f"deleted category {cat.name} ({cat.id}): its {cat.contacts_count} contacts "
                  "are kept, without this category", soft_wrap=True, markup=False)
    return 0


async def list_suppressions(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    flt = f"channel={args.channel.upper()}" if args.channel else ""
    items, resp = await collect(cl.recipients.ListSuppressions,
                                rpb.ListSuppressionsRequest(filter=flt), "suppressions", args)
    if out.json:
        out.emit(items)
        return 0
    wide = out.console.width >= 120
    cols = ["channel", "address", "kind", "reason", "since", *(("id",) if wide else ())]
    out.print(table(f"suppressions ({len(items)})", cols, ids=("address", "id"), rows=[
        [enum(c.Channel.Name(s.channel)), s.address, kind_name(s.kind),
         s.reason, ts(s.created_at), *((s.id,) if wide else ())] for s in items]))
    if hint := more_hint(resp, args):
        out.print(hint, soft_wrap=True)
    return 0


async def add_suppression(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    channel = args.channel or ("email" if "@" in args.address else "sms")
    s = await cl.recipients.AddSuppression(rpb.AddSuppressionRequest(
        channel=CHANNELS[channel], address=args.address, reason=args.reason,
        request_id=args.request_id))
    if out.json:
        out.emit(s)
    else:
        out.print(f"suppressed {s.address} ({enum(c.Channel.Name(s.channel))}): {s.reason}",
                  soft_wrap=True, markup=False)
    return 0


async def remove_suppression(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    if bool(args.address) == bool(args.id):
        out.error("name the entry by ADDRESS or by --id (one of them)")
        return 1
    req = rpb.RemoveSuppressionRequest(id=args.id, reason=args.reason, request_id=args.request_id)
    if args.address:
        req.address = args.address
        req.channel = CHANNELS[args.channel or ("email" if "@" in args.address else "sms")]
    s = await cl.recipients.RemoveSuppression(req)
    if out.json:
        out.emit(s)
    else:
        out.print(f"removed {s.address} ({enum(c.Channel.Name(s.channel))}, "
                  f"{kind_name(s.kind)}) from the suppression list: "
                  "messages to it are sent again", soft_wrap=True, markup=False)
    return 0


def register(root: Any, common: argparse.ArgumentParser) -> None:
    contacts = root.add_parser("contacts", help="contacts: import, list, show")
    sub = contacts.add_subparsers(dest="sub", required=True, metavar="COMMAND")
    im = add(sub, common, "import", import_contacts,
             "import contacts from a CSV file (header: phone, email, first_name, last_name, "
             "external_id, language, categories; other columns are custom fields)")
    im.add_argument("file")
    im.add_argument("--category", action="append", default=[],
                    help="add every row to this category (name or id; repeatable)")
    im.add_argument("--create-category", action="append", default=[],
                    help="like --category, creating the category when it does not exist")
    im.add_argument("--batch-size", type=int, default=2000,
                    help="contacts per message of the import stream")
    im.add_argument("--request-id", default="",
                    help="names this import: running it again with the same id after an "
                         "interruption continues after the rows already imported")
    im.add_argument("--max-errors", type=int, default=50, help="rejected rows printed at most")
    ls = add(sub, common, "list", list_contacts, "list contacts")
    ls.add_argument("--category", default="", help="only this category (name or id)")
    ls.add_argument("--filter", default="")
    ls.add_argument("--order-by", default="")
    paging(ls)
    add(sub, common, "show", show_contact, "one contact").add_argument("id")

    cats = root.add_parser("categories", help="contact categories: list, create, rename, delete")
    sub = cats.add_subparsers(dest="sub", required=True, metavar="COMMAND")
    paging(add(sub, common, "list", list_categories, "list categories"), 1000)
    cc = add(sub, common, "create", create_category, "create a category")
    cc.add_argument("name")
    cc.add_argument("--request-id", default="")
    cr = add(sub, common, "rename", rename_category, "rename a category (its id stays)")
    cr.add_argument("category", metavar="ID", help="the category's id (or its current name)")
    cr.add_argument("name", metavar="NAME")
    cr.add_argument("--request-id", default="")
    cd = add(sub, common, "delete", delete_category,
             "delete a category (its contacts stay; campaigns already built are unaffected)")
    cd.add_argument("category", metavar="ID", help="the category's id (or its name)")
    cd.add_argument("--request-id", default="")

    sup = root.add_parser("suppressions", help="the suppression list: list, add, remove")
    sub = sup.add_subparsers(dest="sub", required=True, metavar="COMMAND")
    sl = add(sub, common, "list", list_suppressions, "list suppressed addresses")
    sl.add_argument("--channel", choices=tuple(CHANNELS), default="")
    paging(sl)
    sa = add(sub, common, "add", add_suppression, "suppress an address (no more messages to it)")
    sa.add_argument("address")
    sa.add_argument("--channel", choices=tuple(CHANNELS), default="",
                    help="default: email when the address has an @, else sms")
    sa.add_argument("--reason", default="added by an operator")
    sa.add_argument("--request-id", default="")
    sr = add(sub, common, "remove", remove_suppression,
             "take an address off the suppression list (messages to it are sent again); an "
             "opt-out or a spam complaint needs an admin and --reason")
    sr.add_argument("address", nargs="?", default="", metavar="ADDRESS")
    sr.add_argument("--id", default="", help="the entry's id (suppressions list --json shows it)")
    sr.add_argument("--channel", choices=tuple(CHANNELS), default="",
                    help="default: email when the address has an @, else sms")
    sr.add_argument("--reason", default="", help="why (required for an opt-out or a complaint)")
    sr.add_argument("--request-id", default="")
