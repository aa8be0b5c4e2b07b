# headwater's image, for any machine that reaches Docker Hub and the Go module proxy:
#   docker build -t headwater:dev .        (or: podman build / buildah bud -t headwater:dev .)
# Where no base-image registry is reachable, `.venv/bin/python -m devcluster.image` builds the
# same image from Debian's packages instead (docs/operations.md, "The image").
#
# The pins below are the ones devcluster/build.py and devcluster/image.py use;
# tests/unit/test_image_recipe.py fails when they drift apart.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG GO_IMAGE=golang:1.26-bookworm

# kustomize and helm, compiled from their released Go modules. `go install mod@version`
# checks every module it downloads against the Go checksum database (sum.golang.org),
# so a tampered release or proxy fails the build rather than reaching the image.
FROM ${GO_IMAGE} AS tools
ARG KUSTOMIZE_VERSION=v5.8.2
ARG HELM_VERSION=v4.3.1
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN=/out GOSUMDB=sum.golang.org
RUN go install -trimpath -ldflags="-s -w" sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION} \
 && go install -trimpath -ldflags="-s -w" helm.sh/helm/v4/cmd/helm@${HELM_VERSION} \
 && /out/kustomize version && /out/helm version --short

# The virtualenv: every dependency pinned in image/requirements.txt (--no-deps: pip
# resolves nothing by itself), then headwater from this checkout.
FROM ${PYTHON_IMAGE} AS venv
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY image/requirements.txt /src/image/requirements.txt
RUN python -m venv /opt/headwater \
 && /opt/headwater/bin/pip install -q --no-deps --require-virtualenv -r /src/image/requirements.txt
COPY pyproject.toml README.md /src/
COPY controllers /src/controllers
COPY devcluster /src/devcluster
RUN /opt/headwater/bin/pip install -q --no-deps /src

FROM ${PYTHON_IMAGE}
# git as Debian bookworm ships it (the same git the tests run with), ssh for ssh://
# remotes, gpg for spec.verify. Not pinned to an exact Debian revision: bookworm's
# security updates replace the old one on the mirror, and a pin would stop the build.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libstdc++6 git openssh-client gpg ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/log/* \
 && echo "headwater:x:65532:65532:headwater:/tmp:/usr/sbin/nologin" >> /etc/passwd \
 && echo "headwater:x:65532:" >> /etc/group
COPY --from=tools /out/kustomize /out/helm /usr/local/bin/
COPY --from=venv /opt/headwater /opt/headwater
# config/ runs this with a read-only root filesystem and an emptyDir on /tmp:
# HOME points there (git and helm write config and caches under it), and
# Python writes no bytecode next to the installed (already compiled) modules.
ENV PATH=/opt/headwater/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 9440 9090
ENTRYPOINT ["/opt/headwater/bin/headwater"]
