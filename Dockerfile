# ferry's container image: the static binary on distroless, as non-root.
#
#   docker build --build-arg VERSION=1.2.3 -t ferry:1.2.3 .
#   docker run -d --name ferry -p 8080:8080 ferry:1.2.3
#   curl -x http://127.0.0.1:8080 https://example.com/
#
# The final image holds the binary, CA certificates, /etc/passwd with the
# nonroot user (65532) and deploy/docker/ferry.toml as /etc/ferry/ferry.toml:
# no shell, so the health check is `ferry health`, not curl.
#
# test/deploy_test.go builds the binary with the go build command of the
# RUN line below (read from this file) and runs it as 65532 on the same
# configuration; it also checks the paths and port named here agree.

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first: a change to the source does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/ferry .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ferry /usr/local/bin/ferry
COPY deploy/docker/ferry.toml /etc/ferry/ferry.toml
USER nonroot:nonroot
EXPOSE 8080
# A SOCKS5 greeting to 127.0.0.1:8080: see `ferry health --help`.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 CMD ["/usr/local/bin/ferry", "health"]
ENTRYPOINT ["/usr/local/bin/ferry"]
CMD ["run", "-c", "/etc/ferry/ferry.toml"]
