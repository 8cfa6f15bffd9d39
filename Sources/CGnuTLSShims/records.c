#define _GNU_SOURCE
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <gnutls/gnutls.h>
#include "CGnuTLSShims.h"

/* A header (under 2 kB) and three full records (16 kB and some overhead each) fit. */
enum { HELD_CAPACITY = 64 * 1024, MAX_HELD_BODY_RECORDS = 3, VECTOR_CAPACITY = 64 };

static __thread int armed_socket = -1;
static __thread int armed_writes = 0;
static __thread struct {
    int socket;        /* -1: nothing held */
    int writes_left;   /* record writes of the response still to come, this one included */
    size_t length;
    size_t written;
    /* HELD_CAPACITY bytes, allocated by the first hold: a thread-local array would be zeroed
     * (made resident) in every thread of the process. */
    unsigned char *bytes;
} held = { .socket = -1 };

static ssize_t send_vector(int socket, struct iovec *vector, size_t count) {
    struct msghdr message;
    memset(&message, 0, sizeof message);
    message.msg_iov = vector;
    message.msg_iovlen = count;
    ssize_t sent;
    do sent = sendmsg(socket, &message, MSG_NOSIGNAL); while (sent < 0 && errno == EINTR);
    return sent;
}

/* Writes what is held on its own: 0 all of it, 1 the socket is full (the rest stays held), -1
 * the write failed (errno; dropped, libmicrohttpd sees the connection fail on its next write). */
static int write_held(void) {
    struct iovec rest = { held.bytes + held.written, held.length - held.written };
    const ssize_t sent = send_vector(held.socket, &rest, 1);
    if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        held.socket = -1;
        return -1;
    }
    if (sent >= 0) held.written += (size_t) sent;
    if (held.written < held.length) return 1;
    held.socket = -1;
    return 0;
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

    /* The event loop turned to another connection: the held one's turn is over. */
    if (held.socket >= 0 && held.socket != socket) (void) write_held();
    if (armed_socket == socket) {
        armed_socket = -1;
        if (held.socket < 0 && held.bytes == NULL) held.bytes = malloc(HELD_CAPACITY);
        if (held.socket < 0 && held.bytes != NULL) {
            held.socket = socket;
            held.writes_left = armed_writes;
            held.length = 0;
            held.written = 0;
        }
    }
    /* giovec_t is struct iovec on POSIX systems. */
    if (held.socket != socket) return send_vector(socket, (struct iovec *) records, (size_t) count);

    if (held.written == 0 && held.writes_left > 1 && held.length + total <= HELD_CAPACITY) {
        for (int index = 0; index < count; index++) {
            memcpy(held.bytes + held.length, records[index].iov_base, records[index].iov_len);
            held.length += records[index].iov_len;
        }
        held.writes_left--;
        return (ssize_t) total;
    }

    /* The response's last record (or one that does not fit): everything goes now. */
    struct iovec vector[VECTOR_CAPACITY + 1];
    const size_t held_left = held.length - held.written;
    vector[0].iov_base = held.bytes + held.written;
    vector[0].iov_len = held_left;
    for (int index = 0; index < count; index++) {
        vector[index + 1].iov_base = records[index].iov_base;
        vector[index + 1].iov_len = records[index].iov_len;
    }
    const ssize_t sent = send_vector(socket, vector, (size_t) count + 1);
    if (sent < 0) return -1;
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

void cgt_install_transport(void *tls_session) {
    gnutls_transport_set_vec_push_function((gnutls_session_t) tls_session, push_records);
}

void cgt_hold_next_response(int socket, size_t body_records) {
    armed_socket = socket;
    armed_writes = 1 + (int) (body_records < MAX_HELD_BODY_RECORDS ? body_records : MAX_HELD_BODY_RECORDS);
}

int cgt_end_pass(void) {
    armed_socket = -1;
    return held.socket < 0 ? 0 : write_held();
}

void cgt_release_thread(void) {
    free(held.bytes);
    held.bytes = NULL;
    held.socket = -1;
    armed_socket = -1;
}

void cgt_forget(int socket) {
    if (socket >= 0 && held.socket == socket) held.socket = -1;
    if (socket >= 0 && armed_socket == socket) armed_socket = -1;
}
