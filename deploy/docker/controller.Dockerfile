# redcloud-controller: metadata and client APIs (HTTP and gRPC).
# Built by deploy/build-images.sh from a staged root filesystem (the release binary and the
# shared libraries it loads); there is no base image to pull. The default data directory,
# redcloud-data/controller, is relative, so it lands under /data (mount a volume there to keep it).
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="redcloud-controller" \
      org.opencontainers.image.version="${VERSION}"
COPY rootfs/ /
# The cluster secret made for this build (see build-images.sh); REDCLOUD_CLUSTER_TOKEN_FILE
# or --cluster-token-file pointing at a Docker secret overrides it.
ENV REDCLOUD_CLUSTER_TOKEN_FILE=/etc/redcloud/cluster.secret
WORKDIR /data
# Ports: 8000 serves clients (HTTP and gRPC APIs, /status, /metrics); 9000 serves S3 clients;
# 8001 serves other nodes (mutual TLS keyed by the cluster secret).
EXPOSE 8000 8001 9000
ENTRYPOINT ["/usr/local/bin/redcloud-controller"]
