# redcloud-controller: metadata and client APIs (HTTP and gRPC).
# Built by deploy/build-images.sh from a staged root filesystem (the release binary and the
# shared libraries it loads); there is no base image to pull. The default data directory,
# redcloud-data/controller, is relative, so it lands under /data (mount a volume there to keep it).
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="redcloud-controller" \
      org.opencontainers.image.version="${VERSION}"
COPY rootfs/ /
WORKDIR /data
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/redcloud-controller"]
