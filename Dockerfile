# syntax=docker/dockerfile:1
# CARE-MLA images: build on Debian bookworm, run on bookworm-slim.
#   docker build --target server  -t care-server .
#   docker build --target worker  -t care-worker .
#   docker build --target carectl -t carectl .
# The runtime package list below must match the binaries' shared libraries:
# scripts/check-runtime-libs.sh verifies it against ldd of a local build.

FROM debian:bookworm AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCARE_BUILD_TESTS=OFF -DCARE_BUILD_BENCH=OFF \
 && cmake --build /build -j"$(nproc)" \
 && cmake --install /build --prefix /opt/care --strip

FROM debian:bookworm-slim AS runtime
# runtime-packages-begin
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates \
      libabsl20220623 \
      libcurl4 \
      libgomp1 \
      libgrpc++1.51 \
      libgrpc29 \
      libprometheus-cpp-core1.0 \
      libprometheus-cpp-pull1.0 \
      libprotobuf32 \
      libsentencepiece0 \
      libsqlite3-0 \
      libssl3 \
      libutf8proc2 \
      libyaml-cpp0.7 \
 && rm -rf /var/lib/apt/lists/*
# runtime-packages-end
RUN useradd --system --uid 10001 --home-dir /var/lib/care --create-home care
COPY --from=build /opt/care/bin/ /usr/local/bin/
USER care
WORKDIR /var/lib/care

FROM runtime AS server
EXPOSE 50051 9464
VOLUME ["/var/lib/care"]
# The standard gRPC health service, through carectl (in the same image).
HEALTHCHECK --interval=10s --timeout=5s --retries=5 \
  CMD ["carectl", "health", "--server=127.0.0.1:50051"]
ENTRYPOINT ["care-server"]
CMD ["--listen=0.0.0.0:50051", "--metrics-listen=0.0.0.0:9464", \
     "--db=/var/lib/care/jobs.db"]

FROM runtime AS worker
EXPOSE 9465
ENTRYPOINT ["care-worker"]
CMD ["serve"]

FROM runtime AS carectl
ENTRYPOINT ["carectl"]
