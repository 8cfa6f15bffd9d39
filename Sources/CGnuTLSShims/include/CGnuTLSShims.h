#ifndef CGNUTLSSHIMS_H
#define CGNUTLSSHIMS_H
/* A response's header and the start of its body in one TLS record write.
 *
 * libmicrohttpd 0.9.75 hands GnuTLS a response's header and its body in two gnutls_record_send
 * calls, so over TLS the header goes out as a record and a TCP segment of its own (it also
 * pushes it at once for any response over 1,400 bytes): the client wakes up, decrypts a
 * header, and waits again for the body. These calls install a GnuTLS transport (the same
 * socket, sendmsg as GnuTLS's own) that holds a header record back and writes it together
 * with the record that follows it.
 *
 * All of it is per thread: an HTTP event loop arms, holds and flushes on its own thread, inside
 * one MHD_run pass, so nothing is shared and nothing outlives the pass. */

struct MHD_Connection;

/* Installs the transport on a connection's TLS session (call when libmicrohttpd starts the
 * connection): 0, or -1 when the connection has no TLS session. */
int cgt_install_transport(struct MHD_Connection *connection);

/* The next record this thread writes on `connection`, if no larger than a header, waits for the
 * one after it (call just before queueing a response that has a body). */
void cgt_hold_next_header(struct MHD_Connection *connection);

/* Ends an MHD_run pass: disarms, and writes a header still held (its body's records did not
 * follow in the same pass: the body failed). 0 nothing was left or it was written; -1 it could
 * not be written at once, and the connection was shut down (libmicrohttpd then closes it)
 * rather than left waiting for bytes that would never come; -2 not even that (errno). */
int cgt_end_pass(void);

/* Drops what is held for `connection` (call when libmicrohttpd closes it, before its socket
 * number can be reused). */
void cgt_forget(struct MHD_Connection *connection);

#endif
