/* The last error of each thread: a fixed thread-local buffer, so reporting an error never allocates and
   nothing leaks when a thread exits. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>

#define BN_ERROR_CAP 2048

static _Thread_local char tls_message[BN_ERROR_CAP];
static _Thread_local int tls_code;

void bn_clear_error(void) {
    tls_message[0] = '\0';
    tls_code = BITNET_OK;
}

/* After truncation the buffer may end inside a multi-byte UTF-8 sequence: cut that partial sequence off so
   the message stays valid UTF-8. */
static void trim_partial_utf8(char *s, size_t len) {
    size_t start = len;
    while (start > 0 && ((unsigned char)s[start - 1] & 0xC0) == 0x80 && len - start < 3)
        start--;
    if (start == 0)
        return;
    unsigned char lead = (unsigned char)s[start - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (need > 1 && len - (start - 1) < need)
        s[start - 1] = '\0';
}

void bn_set_error(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tls_message, sizeof tls_message, fmt, ap);
    va_end(ap);
    if (n < 0)
        snprintf(tls_message, sizeof tls_message, "error code %d", code);
    else if ((size_t)n >= sizeof tls_message)
        trim_partial_utf8(tls_message, sizeof tls_message - 1);
    tls_code = code;
}

BITNET_API const char *bitnet_last_error(void) {
    return tls_message;
}

BITNET_API int bitnet_last_error_code(void) {
    return tls_code;
}
