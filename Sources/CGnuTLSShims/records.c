#define _GNU_SOURCE
#include <sys/types.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <microhttpd.h>
#include <gnutls/gnutls.h>
#include "CGnuTLSShims.h"

/* A header record is a few hundred bytes (status line, about ten fields, TLS overhead); anything
 * larger is not held. */
enum { HELD_CAPACITY = 2048, VECTOR_CAPACITY = 64 };

static __thread int armed_socket = -1;
static __thread struct {
    int socket; /* -1: nothing held */
    size_t length;
    size_t written;
    unsigned char bytes[HELD_CAPACITY];
} held = { .socket = -1 };

static int connection_socket(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    return info == NULL ? -1 : info->connect_fd;
}

static ssize_t send_vector(int socket, struct iovec *vector, size_t count) {
    struct msghdr message;
    memset(&message, 0, sizeof message);
    message.msg_iov = vector;
    message.msg_iovlen = count;
    return sendmsg(socket, &message, MSG_NOSIGNAL);
}

/* GnuTLS's vector push function: what it expects of a socket write (bytes written, or -1 with
 * errno; EAGAIN makes it offer the same records again later). */
static ssize_t push_records(gnutls_transport_ptr_t transport, const giovec_t *records, int count) {
    /* libmicrohttpd gives GnuTLS the socket number itself (gnutls_transport_set_int). */
    const int socket = (int) (intptr_t) transport;
    if (count < 0 || count > VECTOR_CAPACITY) {
        errno = EINVAL;
        return -1;
    }
    size_t total = 0;
    for (int index = 0; index < count; index++) total += records[index].iov_len;

    if (armed_socket == socket) {
        armed_socket = -1;
        if (held.socket < 0 && total <= HELD_CAPACITY) {
            size_t offset = 0;
            for (int index = 0; index < count; index++) {
                memcpy(held.bytes + offset, records[index].iov_base, records[index].iov_len);
                offset += records[index].iov_len;
            }
            held.socket = socket;
            held.length = total;
            held.written = 0;
            return (ssize_t) total;
        }
    }

    struct iovec vector[VECTOR_CAPACITY + 1];
    size_t used = 0;
    const int holding = held.socket == socket;
    const size_t held_left = holding ? held.length - held.written : 0;
    if (holding) {
        vector[used].iov_base = held.bytes + held.written;
        vector[used].iov_len = held_left;
        used++;
    }
    for (int index = 0; index < count; index++) {
        vector[used].iov_base = records[index].iov_base;
        vector[used].iov_len = records[index].iov_len;
        used++;
    }
    const ssize_t sent = send_vector(socket, vector, used);
    if (sent < 0 || !holding) return sent;
    if ((size_t) sent < held_left) {
        /* The socket is full: the held bytes go first next time, then these records again. */
        held.written += (size_t) sent;
        errno = EAGAIN;
        return -1;
    }
    held.socket = -1;
    if ((size_t) sent == held_left && total > 0) {
        errno = EAGAIN;
        return -1;
    }
    return sent - (ssize_t) held_left;
}

int cgt_install_transport(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (info == NULL || info->tls_session == NULL) return -1;
    gnutls_transport_set_vec_push_function((gnutls_session_t) info->tls_session, push_records);
    return 0;
}

void cgt_hold_next_header(struct MHD_Connection *connection) {
    armed_socket = connection_socket(connection);
}

int cgt_end_pass(void) {
    armed_socket = -1;
    if (held.socket < 0) return 0;
    const int socket = held.socket;
    struct iovec rest = { held.bytes + held.written, held.length - held.written };
    held.socket = -1;
    ssize_t sent;
    do sent = send_vector(socket, &rest, 1); while (sent < 0 && errno == EINTR);
    if (sent >= 0 && (size_t) sent == rest.iov_len) return 0;
    return shutdown(socket, SHUT_RDWR) == 0 ? -1 : -2;
}

void cgt_forget(struct MHD_Connection *connection) {
    const int socket = connection_socket(connection);
    if (socket >= 0 && held.socket == socket) held.socket = -1;
    if (socket >= 0 && armed_socket == socket) armed_socket = -1;
}
