/*
 * keymethod.c - what Kore 4.1's worker does with its certificate's key
 * (src/domain.c, kore_domain_tlsinit), and what OpenSSL 3 makes of it.
 *
 * Kore takes the certificate's public key, sets a signing method on the
 * EC_KEY that EVP_PKEY_get1_EC_KEY gives, and signs through the EVP_PKEY.
 * Under OpenSSL 1.1 the method is called (Kore's forwards to its keymgr
 * process); under OpenSSL 3 EVP_PKEY_get1_EC_KEY gives a cached copy of
 * the provider's key, the method is never called, and the signature
 * fails with "missing private key". Both of the method's signing
 * functions are set here, so the one Kore leaves NULL is not the cause.
 *
 *     cc -Wall -o keymethod keymethod.c -lcrypto
 *     openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
 *         -nodes -subj /CN=x -keyout key.pem -out cert.pem
 *     ./keymethod cert.pem
 *
 * Prints the key's provider, "sign called" or "sign_sig called" if the
 * method is reached, the result of EVP_DigestSign and OpenSSL's errors.
 */

#define OPENSSL_SUPPRESS_DEPRECATED

#include <stdio.h>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>

static int
method_sign(int type, const unsigned char *dgst, int dlen,
    unsigned char *sig, unsigned int *slen, const BIGNUM *kinv,
    const BIGNUM *r, EC_KEY *key)
{
	(void)type; (void)dgst; (void)dlen; (void)sig; (void)slen;
	(void)kinv; (void)r; (void)key;
	puts("sign called");
	return (0);
}

static ECDSA_SIG *
method_sign_sig(const unsigned char *dgst, int dlen, const BIGNUM *kinv,
    const BIGNUM *r, EC_KEY *key)
{
	(void)dgst; (void)dlen; (void)kinv; (void)r; (void)key;
	puts("sign_sig called");
	return (NULL);
}

int
main(int argc, char **argv)
{
	FILE			*fp;
	X509			*x509;
	EVP_PKEY		*pkey;
	EC_KEY			*eckey;
	EC_KEY_METHOD		*meth;
	EVP_MD_CTX		*ctx;
	const OSSL_PROVIDER	*prov;
	unsigned char		sig[256];
	size_t			siglen;
	int			ret;

	if (argc != 2 || (fp = fopen(argv[1], "r")) == NULL) {
		fprintf(stderr, "usage: keymethod cert.pem\n");
		return (1);
	}
	if ((x509 = PEM_read_X509(fp, NULL, NULL, NULL)) == NULL ||
	    (pkey = X509_get_pubkey(x509)) == NULL ||
	    (eckey = EVP_PKEY_get1_EC_KEY(pkey)) == NULL) {
		ERR_print_errors_fp(stderr);
		return (1);
	}
	prov = EVP_PKEY_get0_provider(pkey);
	printf("key held by provider: %s\n",
	    prov != NULL ? OSSL_PROVIDER_get0_name(prov) : "none (legacy)");

	meth = EC_KEY_METHOD_new(NULL);
	EC_KEY_METHOD_set_sign(meth, method_sign, NULL, method_sign_sig);
	EC_KEY_set_method(eckey, meth);

	ctx = EVP_MD_CTX_new();
	siglen = sizeof(sig);
	ret = EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey);
	if (ret == 1)
		ret = EVP_DigestSign(ctx, sig, &siglen,
		    (const unsigned char *)"x", 1);
	printf("EVP_DigestSign: %d\n", ret);
	ERR_print_errors_fp(stdout);
	return (0);
}
