#ifndef CLIBCRYPTO_SHIM_H
#define CLIBCRYPTO_SHIM_H
// SHA-256 from the system's libcrypto (OpenSSL), which libpq already links: a system library
// instead of swift-crypto, whose BoringSSL copy dominated a cold build. Through the EVP digest
// API: OpenSSL 3 deprecates the SHA256_* calls.
#include <openssl/evp.h>
#endif
