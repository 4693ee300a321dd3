#ifndef CLIBCRYPTO_SHIM_H
#define CLIBCRYPTO_SHIM_H
// SHA-256 from the system's libcrypto (OpenSSL), which libpq already links: a system library
// instead of swift-crypto, whose BoringSSL copy dominated a cold build.
#include <openssl/sha.h>
#endif
