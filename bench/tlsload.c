/*
 * tlsload - TLS handshakes per second against HOST:PORT, one connection at
 * a time (as `openssl s_time` does), for bench/tls.sh.
 *
 *   tlsload -a HOST:PORT [-t SECONDS] [-2] [-r]
 *
 *   -t  how long to run (5 s)
 *   -2  TLS 1.2 only (else TLS 1.3, which every server here prefers)
 *   -r  resume: one first connection sends `GET /hello` and reads the
 *       answer to its end (a TLS 1.3 ticket comes after the handshake),
 *       then every timed connection offers that connection's session
 *       (its ticket); without -r every connection is a full handshake
 *
 * A timed connection is: connect(2), SSL_connect, close without
 * close_notify (as s_time). Certificates are not verified (the signature
 * in the handshake still is, by the TLS protocol itself). Prints one line:
 *   handshakes=N secs=S per_s=R resumed=K failed=F
 * resumed counts SSL_session_reused(): with -r it must equal handshakes.
 *
 * Why not s_time: it does not resume TLS 1.3 sessions (its first
 * connection never reads the ticket unless -www, and then still offers
 * none: 0 of 2,579 resumed in a try with OpenSSL 3.0.19), and it prints
 * the wall time in whole seconds (time(NULL)), a 20 % error on a 5 s run.
 *
 * cc -O2 -Wall -o bench/tlsload bench/tlsload.c -lssl -lcrypto
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static struct sockaddr_in addr;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One connection, handshake done (or NULL); the caller frees it. */
static SSL *
handshake(SSL_CTX *ctx, SSL_SESSION *sess, int *fdp)
{
	int fd, one = 1;
	SSL *ssl;

	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
		return NULL;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
		close(fd);
		return NULL;
	}
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	SSL_set_tlsext_host_name(ssl, "localhost");
	if (sess != NULL)
		SSL_set_session(ssl, sess);
	if (SSL_connect(ssl) != 1) {
		ERR_print_errors_fp(stderr);
		SSL_free(ssl);
		close(fd);
		return NULL;
	}
	*fdp = fd;
	return ssl;
}

static void
done(SSL *ssl, int fd)
{
	SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	SSL_free(ssl);
	close(fd);
}

int
main(int argc, char **argv)
{
	const char *target = NULL, *colon;
	char host[64], buf[4096];
	double secs = 5, t0, t;
	int c, tls12 = 0, resume = 0, fd;
	long n = 0, resumed = 0, failed = 0;
	SSL_CTX *ctx;
	SSL_SESSION *sess = NULL;
	SSL *ssl;

	while ((c = getopt(argc, argv, "a:t:2r")) != -1) {
		switch (c) {
		case 'a': target = optarg; break;
		case 't': secs = atof(optarg); break;
		case '2': tls12 = 1; break;
		case 'r': resume = 1; break;
		default: goto usage;
		}
	}
	if (target == NULL || (colon = strrchr(target, ':')) == NULL ||
	    (size_t)(colon - target) >= sizeof(host))
		goto usage;
	memcpy(host, target, colon - target);
	host[colon - target] = '\0';
	addr.sin_family = AF_INET;
	addr.sin_port = htons(atoi(colon + 1));
	if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
		goto usage;

	ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(ctx, tls12 ? TLS1_2_VERSION :
	    TLS1_3_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
	/* an EOF without close_notify would be fatal, and lose the session */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif

	if (resume) {
		static const char req[] = "GET /hello HTTP/1.1\r\n"
		    "Host: localhost\r\nConnection: close\r\n\r\n";

		if ((ssl = handshake(ctx, NULL, &fd)) == NULL) {
			fprintf(stderr, "tlsload: first connection failed\n");
			return 1;
		}
		SSL_write(ssl, req, sizeof(req) - 1);
		while (SSL_read(ssl, buf, sizeof(buf)) > 0)
			;
		sess = SSL_get1_session(ssl);
		if (sess == NULL || !SSL_SESSION_is_resumable(sess)) {
			fprintf(stderr, "tlsload: no resumable session\n");
			return 1;
		}
		done(ssl, fd);
	}

	t0 = now();
	do {
		if ((ssl = handshake(ctx, sess, &fd)) == NULL) {
			if (++failed > 100) {
				fprintf(stderr, "tlsload: too many failures\n");
				return 1;
			}
		} else {
			n++;
			resumed += SSL_session_reused(ssl);
			done(ssl, fd);
		}
		t = now();
	} while (t - t0 < secs);
	printf("handshakes=%ld secs=%.3f per_s=%.0f resumed=%ld failed=%ld\n",
	    n, t - t0, n / (t - t0), resumed, failed);
	return 0;
usage:
	fprintf(stderr, "usage: tlsload -a HOST:PORT [-t SECONDS] [-2] [-r]\n");
	return 2;
}
