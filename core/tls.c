/*
 * tls.c - the TLS settings of the listeners marked "tls": one OpenSSL
 * context made from the [server] keys (tls_certificate, its key,
 * tls_protocols, tls_ciphers), checked the way -t and a reload need it
 * (every error names the key and file), and the SSL object each accepted
 * connection gets. The defaults are what a reviewer would sign: TLS 1.2
 * and 1.3 only, forward-secret AEAD ciphers for 1.2, no renegotiation,
 * no compression, session tickets (whose keys are the context's own, so
 * a reload changes them), ALPN http/1.1. The bufferevents around the SSL
 * objects are http_conn.c's. Loop thread (or before the loop starts).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "core.h"

/* Mozilla's "intermediate" TLS 1.2 list: ECDHE key exchange, AEAD only */
#define DEFAULT_CIPHERS \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

struct sqc_tls {
	SSL_CTX		*ctx;
};

/*
 * OpenSSL's reason for the last failure ("no start line"), leaving its
 * error queue empty.
 */
static const char *
ssl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	snprintf(buf, len, "%s", r ? r : "unknown error");
	ERR_clear_error();
	return buf;
}

/* Can path be opened for reading? Else err says why, naming key. */
static int
readable(const char *key, const char *path, char *err, size_t errlen)
{
	FILE *fp = fopen(path, "r");

	if (fp == NULL) {
		snprintf(err, errlen, "%s %s: %s", key, path, strerror(errno));
		return -errno;
	}
	fclose(fp);
	return 0;
}

/* ALPN: http/1.1 when the client offers it; otherwise no ALPN at all. */
static int
select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char ours[] = "\x08http/1.1";
	unsigned char *sel;

	if (SSL_select_next_proto(&sel, outlen, ours, sizeof(ours) - 1, in,
	    inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/*
 * A failed handshake that began "GET " or the like: plain HTTP sent to a
 * TLS port. Answer it as nginx does, in plain HTTP, once, rather than
 * just closing; evhttp closes the connection after. One small write to
 * a socket nothing was written to yet: it does not block.
 */
static void
on_info(const SSL *ssl, int where, int ret)
{
	static const char refusal[] = "HTTP/1.1 400 Bad Request\r\n"
	    "Content-Type: text/plain\r\nContent-Length: 45\r\n"
	    "Connection: close\r\n\r\n"
	    "This port speaks TLS: use https:// or wss://\n";
	unsigned long e;
	int fd;

	if (!(where & SSL_CB_EXIT) || ret > 0)
		return;
	e = ERR_peek_error();
	if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
	    ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST &&
	    (fd = SSL_get_fd(ssl)) >= 0)
		(void)!write(fd, refusal, sizeof(refusal) - 1);
}

/* The certificate and its key: loaded, and matching. */
static int
load_pair(SSL_CTX *ctx, const char *cert, const char *key, char *err,
    size_t errlen)
{
	char why[128];
	int rc;

	if ((rc = readable("tls_certificate", cert, err, errlen)) != 0 ||
	    (rc = readable("tls_certificate_key", key, err, errlen)) != 0)
		return rc;
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		snprintf(err, errlen, "tls_certificate %s: not a PEM "
		    "certificate chain (%s)", cert, ssl_reason(why,
		    sizeof(why)));
		return -EINVAL;
	}
	/* OpenSSL checks that the key is the certificate's as it loads it */
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		unsigned long e = ERR_peek_last_error();

		if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
		    (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH ||
		    ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH)) {
			ERR_clear_error();
			snprintf(err, errlen, "tls_certificate_key %s does not "
			    "match tls_certificate %s", key, cert);
		} else
			snprintf(err, errlen, "tls_certificate_key %s: not a "
			    "PEM private key (%s)", key, ssl_reason(why,
			    sizeof(why)));
		return -EINVAL;
	}
	return 0;
}

/* The context's protocols, ciphers and options, from c. */
static int
set_policy(SSL_CTX *ctx, const struct sqc_config *c, char *err,
    size_t errlen)
{
	const char *ciphers = *c->tls_ciphers ? c->tls_ciphers :
	    DEFAULT_CIPHERS;

	SSL_CTX_set_min_proto_version(ctx, c->tls_protocols & SQC_TLS_1_2 ?
	    TLS1_2_VERSION : TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(ctx, c->tls_protocols & SQC_TLS_1_3 ?
	    TLS1_3_VERSION : TLS1_2_VERSION);
	if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
		ERR_clear_error();
		snprintf(err, errlen, "tls_ciphers: no cipher matches '%s'",
		    ciphers);
		return -EINVAL;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* an idle connection keeps no read or write buffer */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"squall",
	    6);
	SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
	SSL_CTX_set_info_callback(ctx, on_info);
	return 0;
}

/*
 * The TLS settings of c into *out: NULL when no listener of c is "tls".
 * Returns 0, or a negative errno value with err naming the key and file
 * (a certificate that does not load, a key that does not match it).
 */
int
sqc_tls_new(const struct sqc_config *c, struct sqc_tls **out, char *err,
    size_t errlen)
{
	struct sqc_tls *t;
	size_t i;
	int rc;

	*out = NULL;
	for (i = 0; i < c->nlisten && !c->listen[i].tls; i++)
		;
	if (i == c->nlisten)
		return 0;
	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (t->ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		free(t);
		ERR_clear_error();
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if ((rc = set_policy(t->ctx, c, err, errlen)) != 0 ||
	    (rc = load_pair(t->ctx, c->tls_certificate,
	    c->tls_certificate_key, err, errlen)) != 0) {
		sqc_tls_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

/*
 * Frees t. Connections that took an SSL object from it keep what they
 * need (OpenSSL counts the context's references).
 */
void
sqc_tls_free(struct sqc_tls *t)
{
	if (t == NULL)
		return;
	SSL_CTX_free(t->ctx);
	free(t);
}

/* A server-side SSL object for one accepted connection, or NULL. */
struct ssl_st *
sqc_tls_accept(struct sqc_tls *t)
{
	SSL *ssl = SSL_new(t->ctx);

	if (ssl == NULL)
		ERR_clear_error();
	return ssl;
}
