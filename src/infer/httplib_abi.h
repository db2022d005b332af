// cpp-httplib as Debian builds it: libcpp-httplib is compiled with OpenSSL, zlib and Brotli support
// (its pkg-config Cflags), and the header must see the same macros, or httplib::Request's layout
// differs from the library's. Include this, never <httplib.h> directly.
#pragma once

#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_OPENSSL_SUPPORT
#endif
#ifndef CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#endif
#ifndef CPPHTTPLIB_BROTLI_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT
#endif
#include <httplib.h>
