# syntax=docker/dockerfile:1

# Build stage: a static binary (no cgo), with paths trimmed from it.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY *.go schema.sql openapi.json openapi-management.json docs.html common-passwords.txt common-passwords-zxcvbn.txt ./
# The version reported by `usersvc version`, /health and /metrics.
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/usersvc .

# Run stage: no shell, no package manager, a non-root user. Debian 13's
# static image (static-debian12 is deprecated). For reproducible builds pin
# it by digest: docker buildx imagetools inspect gcr.io/distroless/static-debian13:nonroot
# prints it; write FROM gcr.io/distroless/static-debian13:nonroot@sha256:<digest>.
FROM gcr.io/distroless/static-debian13:nonroot
COPY --from=build /out/usersvc /usersvc
# The MIT notices of the password lists embedded in the binary.
COPY docs/third-party.md /usr/share/doc/usersvc/third-party.md
USER nonroot:nonroot
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["/usersvc", "healthcheck"]
ENTRYPOINT ["/usersvc"]
