# redcloud-chunkserver: chunk storage (gRPC).
# Built by deploy/build-images.sh from a staged root filesystem (the release binary and the
# shared libraries it loads); there is no base image to pull. The default data directory,
# redcloud-data/chunkserver, is relative, so it lands under /data (mount a volume there to keep it).
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="redcloud-chunkserver" \
      org.opencontainers.image.version="${VERSION}"
COPY rootfs/ /
WORKDIR /data
EXPOSE 50051
ENTRYPOINT ["/usr/local/bin/redcloud-chunkserver"]
