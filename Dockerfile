# Kairos: build the virtualenv in one stage, run it as a non-root user in a slim one.
FROM docker.io/library/debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md /src/
COPY service /src/service
COPY policies /src/policies
RUN python3 -m venv /opt/kairos \
 && /opt/kairos/bin/pip install --no-cache-dir /src

FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data kairos \
 && mkdir -p /data && chown kairos /data
COPY --from=build /opt/kairos /opt/kairos
ENV PATH=/opt/kairos/bin:$PATH \
    KAIROS_HOST=0.0.0.0 \
    KAIROS_PORT=50051 \
    KAIROS_HTTP_PORT=9090 \
    KAIROS_DATA_DIR=/data \
    KAIROS_LOG_FORMAT=json
USER kairos
VOLUME ["/data"]
EXPOSE 50051 9090
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s CMD ["kairos", "health"]
ENTRYPOINT ["kairos", "serve"]
