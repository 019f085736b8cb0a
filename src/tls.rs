//! The process's TLS crypto provider, chosen once for every client that speaks TLS (the
//! connectors' HTTP client, the trace exporter, PostgreSQL).

/// Makes ring the process's TLS crypto provider, unless one is already chosen. reqwest is
/// built without a default provider so that no C/CMake toolchain beyond `cc` is needed.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
