// Certificates for the TLS tests, made once per test binary with the openssl
// command in a fresh temporary directory: a CA, a server certificate it
// signed (localhost, 127.0.0.1, ::1), a self-signed one, a key that belongs
// to neither, and the server key encrypted with the password "secret"; and
// the client and server contexts the tests use.
#pragma once

#include <unistd.h>

#include <asyncio/ssl.hpp>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace asyncio_test {

class TlsCerts {
  public:
    /// The certificates, made on first use; exits 77 (skipped) without openssl.
    static const TlsCerts& get() {
        static const TlsCerts certs;
        return certs;
    }

    std::string path(const std::string& name) const { return dir_ + "/" + name; }
    std::string ca() const { return path("ca.pem"); }
    std::string server_cert() const { return path("server.pem"); }
    std::string server_key() const { return path("server.key"); }
    std::string encrypted_key() const { return path("server-enc.key"); }
    std::string self_signed_cert() const { return path("self.pem"); }
    std::string self_signed_key() const { return path("self.key"); }
    std::string other_key() const { return path("other.key"); }

  private:
    TlsCerts() {
        if (std::system("command -v openssl >/dev/null 2>&1") != 0) {
            std::fprintf(stderr, "the openssl command is missing: skipped\n");
            std::exit(77);
        }
        char pattern[] = "/tmp/asyncio-tls-XXXXXX";
        if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
        dir_ = pattern;
        const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
        run("openssl req -x509 " + ec +
            " -keyout ca.key -out ca.pem -days 2 -subj '/CN=asyncio test CA'"
            " -addext basicConstraints=critical,CA:TRUE -addext "
            "keyUsage=critical,keyCertSign,cRLSign");
        run("openssl req " + ec + " -keyout server.key -out server.csr -subj /CN=localhost");
        run("printf "
            "'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\\nextendedKeyUsage=serverAuth\\n"
            "basicConstraints=critical,CA:FALSE\\nkeyUsage=critical,digitalSignature\\n' > "
            "server.ext");
        run("openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
            " -out server.pem -extfile server.ext");
        run("openssl req -x509 " + ec +
            " -keyout self.key -out self.pem -days 2 -subj /CN=localhost"
            " -addext subjectAltName=DNS:localhost");
        run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out other.key");
        run("openssl pkey -in server.key -aes256 -passout pass:secret -out server-enc.key");
    }
    ~TlsCerts() { std::system(("rm -rf '" + dir_ + "'").c_str()); }

    void run(const std::string& command) const {
        // Only stderr goes: a command's own "> file" must keep its stdout.
        const std::string line = "cd '" + dir_ + "' && { " + command + "; } 2>/dev/null";
        if (std::system(line.c_str()) != 0) throw std::runtime_error("failed: " + command);
    }

    std::string dir_;
};

/// Which certificate a test server presents.
enum class ServerCert { signed_by_ca, self_signed };

/// A client's context that trusts the test CA (and checks the hostname).
inline asyncio::SSLContext client_context() {
    asyncio::SSLContext context(asyncio::Purpose::SERVER_AUTH);
    context.load_verify_locations(TlsCerts::get().ca());
    return context;
}

/// A server's context with the CA-signed certificate or the self-signed one.
inline asyncio::SSLContext server_context(ServerCert cert = ServerCert::signed_by_ca) {
    const TlsCerts& certs = TlsCerts::get();
    asyncio::SSLContext context(asyncio::Purpose::CLIENT_AUTH);
    if (cert == ServerCert::self_signed) {
        context.load_cert_chain(certs.self_signed_cert(), certs.self_signed_key());
    } else {
        context.load_cert_chain(certs.server_cert(), certs.server_key());
    }
    return context;
}

}  // namespace asyncio_test
