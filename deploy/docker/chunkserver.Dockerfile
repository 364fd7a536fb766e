# redcloud-chunkserver: chunk storage (gRPC).
# Built by deploy/build-images.sh from a staged root filesystem (the release binary and the
# shared libraries it loads); there is no base image to pull. The default data directory,
# redcloud-data/chunkserver, is relative, so it lands under /data (mount a volume there to keep it).
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="redcloud-chunkserver" \
      org.opencontainers.image.version="${VERSION}"
COPY rootfs/ /
# The cluster secret made for this build (see build-images.sh); REDCLOUD_CLUSTER_TOKEN_FILE
# or --cluster-token-file pointing at a Docker secret overrides it.
ENV REDCLOUD_CLUSTER_TOKEN_FILE=/etc/redcloud/cluster.secret
WORKDIR /data
# Ports: 50051 serves other nodes (gRPC over mutual TLS keyed by the cluster secret); 50052 serves
# /metrics.
EXPOSE 50051 50052
ENTRYPOINT ["/usr/local/bin/redcloud-chunkserver"]
