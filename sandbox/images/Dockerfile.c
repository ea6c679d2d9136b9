# Per-language sandbox image for GCC 14 (language `c`), on the official base image.
#   docker build -f sandbox/images/Dockerfile.c -t chorus-sandbox-c:1 sandbox/images
# Nothing is added: the base already has sh, head, tar, timeout (coreutils) and the
# unprivileged user 65534 the executor runs as. The file exists so deployments pin the
# base in one reviewed place and can add libraries their users need.
FROM gcc:14
ENV LANG=C.UTF-8
WORKDIR /work
