# Loop Gateway image: build a release binary, then run it as a non-root user on a slim base.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --features whatsapp-linked --bin loop-gateway \
 && cp target/release/loop-gateway /loop-gateway

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin gateway \
 && mkdir -p /data && chown gateway /data
COPY --from=build /loop-gateway /usr/local/bin/loop-gateway
USER gateway
WORKDIR /data
ENV HOST=0.0.0.0 PORT=3000 DATA_DIR=/data LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 3000
ENTRYPOINT ["/usr/local/bin/loop-gateway"]
CMD ["serve"]
