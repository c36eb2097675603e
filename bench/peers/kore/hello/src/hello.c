/*
 * hello - GET /hello answers 200 "Hello, world" (text/plain), as squall's
 * hello plugin and nginx's `return 200 "Hello, world"` do, for
 * bench/tls.sh's Kore column. Built with kodev (see bench/README.md).
 */
#include <kore/kore.h>
#include <kore/http.h>

int	page(struct http_request *);

int
page(struct http_request *req)
{
	static const char body[] = "Hello, world";

	http_response_header(req, "content-type", "text/plain");
	http_response(req, 200, body, sizeof(body) - 1);
	return (KORE_RESULT_OK);
}
