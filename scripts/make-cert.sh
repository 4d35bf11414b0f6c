#!/usr/bin/env bash
# Makes a self-signed certificate and its key for modeld's HTTPS (docs/tls.md), valid for the intranet IP addresses
# and host names given, and prints where it wrote them. Clients trust the certificate itself as their CA:
# `curl --cacert CERT`, `modelctl --cacert CERT`, `openai.OpenAI(http_client=httpx.Client(verify=CERT))`.
#
#   scripts/make-cert.sh [--out DIR] [--days N] NAME [NAME ...]
#
#   NAME      an IPv4 or IPv6 address (10.0.0.5, fd00::5) or a host name (models.corp.example); the first is the
#             certificate's common name, all go into its subjectAltName (IP: or DNS:)
#   --out     the directory to write modeld.crt and modeld.key into (default: the current directory); existing
#             files are replaced
#   --days    how long the certificate is valid (default 825)
#
# The key is an ECDSA P-256 key, unencrypted, readable by its owner only. Start modeld with
# `--tls-cert DIR/modeld.crt --tls-key DIR/modeld.key`; after replacing them, `kill -HUP` the daemon (or
# `systemctl reload modeld`) and new connections get the new certificate.
set -euo pipefail

usage() {
    sed -n '5,10p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

out=.
days=825
names=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
        --days) [ $# -ge 2 ] || usage; days=$2; shift 2 ;;
        -h | --help) usage ;;
        -*) echo "make-cert.sh: unknown option $1" >&2; usage ;;
        *) names+=("$1"); shift ;;
    esac
done
[ ${#names[@]} -gt 0 ] || usage
case "$days" in '' | *[!0-9]*) echo "make-cert.sh: --days wants a whole number, not \"$days\"" >&2; exit 2 ;; esac
command -v openssl >/dev/null || { echo "make-cert.sh: openssl is not installed (apt-get install openssl)" >&2; exit 1; }

alt=()
for name in "${names[@]}"; do
    if [[ "$name" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ || "$name" == *:* ]]; then
        alt+=("IP:$name")
    elif [[ "$name" =~ ^[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]]; then
        alt+=("DNS:$name")
    else
        echo "make-cert.sh: \"$name\" is neither an IP address nor a host name" >&2
        exit 2
    fi
done
san=$(IFS=,; echo "${alt[*]}")

mkdir -p "$out"
cert="$(cd "$out" && pwd)/modeld.crt"
key="$(cd "$out" && pwd)/modeld.key"
# Written beside the final files, then moved into place: a daemon reloading on SIGHUP never reads half a file.
tmp_key=$(mktemp "$key.XXXXXX")
tmp_cert=$(mktemp "$cert.XXXXXX")
trap 'rm -f "$tmp_key" "$tmp_cert"' EXIT
chmod 600 "$tmp_key"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -days "$days" \
    -keyout "$tmp_key" -out "$tmp_cert" -subj "/CN=${names[0]}" \
    -addext "subjectAltName=$san" -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,digitalSignature,keyCertSign" -addext "extendedKeyUsage=serverAuth" 2>/dev/null \
    || { echo "make-cert.sh: openssl could not make the certificate" >&2; exit 1; }
chmod 644 "$tmp_cert"
mv -f "$tmp_key" "$key"
mv -f "$tmp_cert" "$cert"
trap - EXIT
echo "certificate: $cert"
echo "key: $key"
echo "subjectAltName: $san"
echo "sha256 fingerprint: $(openssl x509 -in "$cert" -noout -fingerprint -sha256 | cut -d= -f2)"
