# Herald's image: `docker run herald:local <subcommand>` (worker, sink, db migrate, simulate, ...).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HERALD_DATA_DIR=/data

WORKDIR /src
# The wheel force-includes deploy/kafka/pom.xml and dashboards/ (see pyproject.toml).
COPY pyproject.toml README.md ./
COPY deploy ./deploy
COPY dashboards ./dashboards
COPY herald ./herald
RUN pip install . && rm -rf /src

RUN useradd --create-home --uid 10001 herald && mkdir -p /data && chown herald /data
USER herald
WORKDIR /home/herald
VOLUME ["/data"]

ENTRYPOINT ["herald"]
CMD ["--help"]
