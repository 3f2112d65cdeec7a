#!/bin/sh
# Makes the certificates the TLS examples' tests use, with the openssl
# command, into DIR (created if missing):
#
#   make_test_certs.sh DIR
#
# ca.pem (ca.key): a CA; server.pem (server.key): a certificate it signed
# for localhost, 127.0.0.1 and ::1. The same commands as tests/tls_certs.hpp;
# they are valid for two days, since CTest makes them again on every run
# (the fixture example:tls_certs).
set -eu
mkdir -p "$1"
cd "$1"
: >openssl.log

# openssl chatters on stderr: shown only when a command fails.
run() {
  "$@" 2>>openssl.log || { cat openssl.log >&2; exit 1; }
}

ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
run openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj '/CN=asyncio test CA' \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
run openssl req $ec -keyout server.key -out server.csr -subj /CN=localhost
printf '%s\n' 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1' 'extendedKeyUsage=serverAuth' \
  'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' >server.ext
run openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
  -out server.pem -extfile server.ext
echo "certificates in $PWD"
