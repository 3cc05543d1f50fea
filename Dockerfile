# Herald: one image for every process. Run one process per container:
#   docker run herald:<version>                          # services.campaigns (the default)
#   docker run herald:<version> services.recipients      # or services.stats, gateways.smpp,
#                                                        # gateways.email, "services.campaigns migrate"
#   docker run --entrypoint herald herald:<version> --help   # the operators' CLI

# --- build: the application and its pinned dependencies in a venv ---------------------------
FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# Every pinned dependency ships a binary wheel for CPython 3.11 on Linux, so no compiler is
# installed (--only-binary makes a missing wheel fail here rather than build from source).
RUN python -m venv /opt/herald
WORKDIR /src
# Dependencies first, in a layer of their own: they change less often than the code.
COPY requirements/constraints.txt requirements/constraints.txt
RUN /opt/herald/bin/pip install --only-binary=:all: -r requirements/constraints.txt

# The application (generated protos included: protos/herald/v1/*_pb2*.py are committed),
# installed non-editable; -c keeps every dependency at its pinned version.
COPY pyproject.toml ./
COPY protos protos
COPY shared shared
COPY services services
COPY gateways gateways
COPY cli cli
RUN /opt/herald/bin/pip install -c requirements/constraints.txt . \
    && /opt/herald/bin/pip uninstall -y pip setuptools

# --- runtime: Python, the venv, an unprivileged user; no compiler, no pip --------------------
FROM python:3.11-slim-bookworm

# pip, setuptools and wheel of the base image are not needed to run Herald.
RUN python -m pip uninstall -y pip setuptools wheel \
    && groupadd --gid 10001 herald \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /srv/herald \
       --shell /usr/sbin/nologin herald

ENV PATH=/opt/herald/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

COPY --from=build /opt/herald /opt/herald

# Relative default paths (SQLite files, the development tracking key) land in var/ under
# the working directory: writable by the herald user, or mount a volume there.
WORKDIR /srv/herald
RUN mkdir var && chown 10001:10001 var

# Numeric, so Kubernetes can check runAsNonRoot without looking the name up.
USER 10001:10001

ENTRYPOINT ["python", "-m"]
CMD ["services.campaigns"]
