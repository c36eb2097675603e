/*
 * tls.c - the TLS settings of the listeners marked "tls": an OpenSSL
 * context made from the [server] keys (tls_certificate, its key,
 * tls_protocols, tls_ciphers), one more per [tls NAME] section, chosen
 * by the name the client asks for (SNI), all checked the way -t and a
 * reload need it (every error names the key and file), and the SSL
 * object each accepted connection gets. The defaults are what a
 * reviewer would sign: TLS 1.2 and 1.3 only, forward-secret AEAD ciphers
 * for 1.2, no renegotiation, no compression, session tickets (whose keys
 * are the context's own, so a reload changes them), ALPN http/1.1, and
 * a plain-HTTP 400 to plain HTTP. The bufferevents around the SSL
 * objects are http_conn.c's. Loop thread (or before the loop starts).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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

/* The certificates chosen by server name, with their contexts. */
struct names {
	size_t		 n;
	struct named {
		char	*name;		/* "www.example.com", "*.example.com" */
		SSL_CTX	*ctx;
	} *v;
};

struct sqc_tls {
	SSL_CTX		*ctx;		/* the [server] pair: the default */
};

/*
 * The default context's index for its struct names: the names live as
 * long as the context, which OpenSSL keeps while a connection made from
 * it lives (a reload frees our reference, not theirs).
 */
static int names_index = -1;

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

/*
 * A certificate outside its validity period still loads (nginx's way: a
 * server does not refuse to start over a date), but clients will refuse
 * it: say so at -t, start and reload.
 */
static void
warn_validity(const char *key, const char *path, X509 *x)
{
	if (x == NULL)
		return;
	if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
		sqc_log(SQ_LOG_WARN, NULL, "%s %s has expired: clients will "
		    "refuse it", key, path);
	else if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
		sqc_log(SQ_LOG_WARN, NULL, "%s %s is not valid yet: clients "
		    "will refuse it", key, path);
}

/*
 * The certificate and its key: loaded, and matching. Errors name the keys
 * as where says them: "tls_" for [server]'s, "[tls NAME] " for a
 * section's.
 */
static int
load_pair(SSL_CTX *ctx, const char *where, const char *cert,
    const char *key, char *err, size_t errlen)
{
	char why[128], kc[300], kk[300];
	int rc;

	snprintf(kc, sizeof(kc), "%scertificate", where);
	snprintf(kk, sizeof(kk), "%scertificate_key", where);
	if ((rc = readable(kc, cert, err, errlen)) != 0 ||
	    (rc = readable(kk, key, err, errlen)) != 0)
		return rc;
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		snprintf(err, errlen, "%s %s: not a PEM certificate chain "
		    "(%s)", kc, cert, ssl_reason(why, sizeof(why)));
		return -EINVAL;
	}
	warn_validity(kc, cert, SSL_CTX_get0_certificate(ctx));
	/* OpenSSL checks that the key is the certificate's as it loads it */
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		unsigned long e = ERR_peek_last_error();

		if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
		    (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH ||
		    ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH)) {
			ERR_clear_error();
			snprintf(err, errlen, "%s %s does not match %s %s", kk,
			    key, kc, cert);
		} else
			snprintf(err, errlen, "%s %s: not a PEM private key "
			    "(%s)", kk, key, ssl_reason(why, sizeof(why)));
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

/* A context with squall's policy and one certificate pair. */
static SSL_CTX *
new_ctx(const struct sqc_config *c, const char *where, const char *cert,
    const char *key, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		ERR_clear_error();
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (set_policy(ctx, c, err, errlen) != 0 ||
	    load_pair(ctx, where, cert, key, err, errlen) != 0) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* ex_data's free function: the names go with the default context. */
static void
names_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
    void *argp)
{
	struct names *ns = ptr;

	if (ns == NULL)
		return;
	for (size_t i = 0; i < ns->n; i++) {
		SSL_CTX_free(ns->v[i].ctx);
		free(ns->v[i].name);
	}
	free(ns->v);
	free(ns);
}

/* Does the client's name match NAME ("*." matches one label)? */
static int
name_matches(const char *pattern, const char *host)
{
	const char *dot;

	if (strncmp(pattern, "*.", 2) != 0)
		return strcasecmp(pattern, host) == 0;
	dot = strchr(host, '.');
	return dot != NULL && dot != host && strcasecmp(pattern + 1, dot) == 0;
}

/*
 * SNI: the context of the [tls NAME] the client asked for, exact names
 * before wildcards; the default one when none matches (or no name came).
 */
static int
select_cert(SSL *ssl, int *alert, void *arg)
{
	const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	struct names *ns = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl),
	    names_index);

	if (host == NULL || ns == NULL)
		return SSL_TLSEXT_ERR_OK;
	for (int wild = 0; wild < 2; wild++)
		for (size_t i = 0; i < ns->n; i++)
			if ((ns->v[i].name[0] == '*') == wild &&
			    name_matches(ns->v[i].name, host)) {
				SSL_set_SSL_CTX(ssl, ns->v[i].ctx);
				return SSL_TLSEXT_ERR_OK;
			}
	return SSL_TLSEXT_ERR_OK;
}

/* The [tls NAME] sections of c, hung on the default context def. */
static int
add_names(SSL_CTX *def, const struct sqc_config *c, char *err,
    size_t errlen)
{
	struct names *ns;
	char where[300];

	if (c->ntls_names == 0)
		return 0;
	if (names_index < 0 && (names_index = SSL_CTX_get_ex_new_index(0,
	    NULL, NULL, NULL, names_free)) < 0)
		goto nomem;
	if ((ns = calloc(1, sizeof(*ns))) == NULL)
		goto nomem;
	if ((ns->v = calloc(c->ntls_names, sizeof(*ns->v))) == NULL ||
	    SSL_CTX_set_ex_data(def, names_index, ns) != 1) {
		free(ns->v);
		free(ns);
		goto nomem;
	}
	for (size_t i = 0; i < c->ntls_names; i++) {
		const struct sqc_tls_conf *t = &c->tls_names[i];

		snprintf(where, sizeof(where), "[tls %s] ", t->name);
		if ((ns->v[i].name = strdup(t->name)) == NULL)
			goto nomem;	/* names_free frees what was made */
		ns->n++;
		if ((ns->v[i].ctx = new_ctx(c, where, t->certificate,
		    t->certificate_key, err, errlen)) == NULL)
			return -EINVAL;
	}
	SSL_CTX_set_tlsext_servername_callback(def, select_cert);
	return 0;
nomem:
	ERR_clear_error();
	snprintf(err, errlen, "out of memory");
	return -ENOMEM;
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
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if ((t->ctx = new_ctx(c, "tls_", c->tls_certificate,
	    c->tls_certificate_key, err, errlen)) == NULL) {
		free(t);
		return -EINVAL;
	}
	if ((rc = add_names(t->ctx, c, err, errlen)) != 0) {
		sqc_tls_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

/* One TLS file, as sqc_tls_warn_unreadable says it. */
static void
warn_unreadable(const char *what, const char *path, const char *user)
{
	if (access(path, R_OK) != 0)
		sqc_log(SQ_LOG_WARN, NULL, "%s %s cannot be read by user %s "
		    "(%s): a reload will fail until it can, and the running "
		    "certificates serve on", what, path, user, strerror(errno));
}

/*
 * Once `user` has taken effect, reloads read the certificates and keys
 * as that user: say at start which ones it cannot read (a key only root
 * may read, as is common), rather than at the first reload.
 */
void
sqc_tls_warn_unreadable(const struct sqc_config *c)
{
	char what[320];
	size_t i;

	if (c->user == NULL || *c->user == '\0' || getuid() == 0)
		return;
	for (i = 0; i < c->nlisten && !c->listen[i].tls; i++)
		;
	if (i == c->nlisten)
		return;
	warn_unreadable("tls_certificate", c->tls_certificate, c->user);
	warn_unreadable("tls_certificate_key", c->tls_certificate_key,
	    c->user);
	for (i = 0; i < c->ntls_names; i++) {
		snprintf(what, sizeof(what), "[tls %s] certificate",
		    c->tls_names[i].name);
		warn_unreadable(what, c->tls_names[i].certificate, c->user);
		snprintf(what, sizeof(what), "[tls %s] certificate_key",
		    c->tls_names[i].name);
		warn_unreadable(what, c->tls_names[i].certificate_key,
		    c->user);
	}
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
