#ifndef CGNUTLSSHIMS_H
#define CGNUTLSSHIMS_H
#include <stddef.h>
/* A TLS response's records in one socket write.
 *
 * libmicrohttpd 0.9.75 hands GnuTLS a response's header and its body in separate
 * gnutls_record_send calls, one TLS record each (16 kB at most), and GnuTLS writes each record
 * to the socket as it is made: the header goes out as a TCP segment of its own (pushed at once
 * for any response over 1,400 bytes), then every body record, and the client wakes up for each.
 * These calls install a GnuTLS transport (the same socket, sendmsg as GnuTLS's own) that holds
 * the records of a response back and writes them together.
 *
 * Held bytes never wait for something that may not come: they leave with the response's last
 * record (GnuTLS still owns that record, so a short write is retried through GnuTLS), or, when
 * the event loop turns to another connection or ends its pass first, on their own; if the
 * socket is full then, the rest leaves with the response's next record, which libmicrohttpd
 * is bound to write.
 *
 * All of it is per thread: an event loop arms, holds and writes on its own thread. */

/* Installs the transport on a connection's GnuTLS session (a gnutls_session_t; call when
 * libmicrohttpd starts the connection). */
void cgt_install_transport(void *tls_session);

/* The response about to be queued on the connection of `socket` is held back and written at once: its header
 * and its `body_records` records (the body's TLS records as libmicrohttpd makes them), or the
 * first three of them; the rest follow one write per record. Call just before queueing a
 * response that has a body. */
void cgt_hold_next_response(int socket, size_t body_records);

/* Ends an MHD_run pass: disarms, and writes what is held. 0 nothing was held or it was written;
 * 1 the socket was full (the rest leaves with the response's next record); -1 the write failed
 * (errno; libmicrohttpd will see the connection fail too). */
int cgt_end_pass(void);

/* Frees this thread's buffer (call when an event loop thread ends; what it still holds is for
 * connections being closed). */
void cgt_release_thread(void);

/* Drops what is held for the connection of `socket` (call when libmicrohttpd closes it, before
 * the socket number can be reused). */
void cgt_forget(int socket);

#endif
