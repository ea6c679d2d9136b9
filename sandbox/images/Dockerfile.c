# Per-language sandbox image for GCC 14 and make (language `c` and Makefile projects),
# on the official base image.
#   docker build -f sandbox/images/Dockerfile.c -t chorus-sandbox-c:2 sandbox/images
# The base already has sh, head, tar, timeout, du, find, make and the unprivileged user
# 65534 the executor runs as; /cache is the build cache's mount point, which Docker
# gives a new volume the owner of.
FROM gcc:14
RUN mkdir /cache && chown 65534:65534 /cache
ENV LANG=C.UTF-8
WORKDIR /work
