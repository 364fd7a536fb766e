# redcloud-cli: the `redcloud` command line. Without arguments it starts the interactive shell;
# with arguments it runs them as one command (`docker run ... redcloud-cli list work`).
# Built by deploy/build-images.sh from a staged root filesystem; there is no base image to pull.
#
# Run it with the working directory mounted at /uploads: the key is kept there, in
# .redcloud/config.json, so one-shot `--rm` containers stay logged in; downloads go to
# /downloads. The controllers are reached through the network alias `controller`.
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="redcloud-cli" \
      org.opencontainers.image.version="${VERSION}"
COPY rootfs/ /
ENV REDCLOUD_SERVER=http://controller:8000 \
    REDCLOUD_CONFIG=/uploads/.redcloud/config.json \
    REDCLOUD_DOWNLOAD_DIR=/downloads
WORKDIR /uploads
ENTRYPOINT ["/usr/local/bin/redcloud"]
CMD ["shell"]
