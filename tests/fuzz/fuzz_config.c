/*
 * fuzz_config.c - the configuration loader on any file: the input is
 * written to a memfd that sqc_config_load reads as /proc/self/fd/N. A
 * configuration that loads is also dumped (squalld -T), to /dev/null.
 * Routes name plugins by path only: nothing is loaded.
 */
#include "config.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../core/core.h"
#include "fuzz.h"

/*
 * A "route 'NAME' has no 'plugin' key" error names a route of the line
 * it gives: NAME is on that line of the input.
 */
static void
check_route_error(const char *err, const uint8_t *data, size_t size)
{
	const char *p, *q, *line, *end;
	char name[SQC_ERRLEN];
	int n;

	if ((p = strstr(err, ": route '")) == NULL ||
	    (q = strstr(p, "' has no 'plugin' key")) == NULL)
		return;
	n = atoi(strchr(err + strlen("/proc/self/fd/"), ':') + 1);
	p += strlen(": route '");
	snprintf(name, sizeof(name), "%.*s", (int)(q - p), p);
	/* the route as given, without the '*' of a prefix route */
	if (name[0] != '\0' && name[strlen(name) - 1] == '*')
		name[strlen(name) - 1] = '\0';
	line = (const char *)data;
	end = line + size;
	while (--n > 0 && line < end) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));

		line = nl ? nl + 1 : end;
	}
	FUZZ_CHECK(line < end || name[0] == '\0');
	if (name[0] != '\0')
		FUZZ_CHECK(memmem(line, (size_t)(end - line), name,
		    strlen(name)) != NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *devnull;
	struct sqc_config *c;
	char path[64], err[SQC_ERRLEN];
	int fd;

	if (devnull == NULL && (devnull = fopen("/dev/null", "w")) == NULL)
		abort();
	if ((fd = memfd_create("fuzz_config", 0)) < 0)
		abort();
	if (size > 0 && write(fd, data, size) != (ssize_t)size)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	err[0] = '\0';
	c = sqc_config_load(path, err, sizeof(err));
	if (c == NULL) {
		/* every refusal says where and why */
		FUZZ_CHECK(strncmp(err, path, strlen(path)) == 0);
		FUZZ_CHECK(strlen(err) > strlen(path) + 1);
		check_route_error(err, data, size);
	} else {
		FUZZ_CHECK(c->nlisten > 0);
		for (size_t i = 0; i < c->nroutes; i++) {
			FUZZ_CHECK(c->routes[i].path[0] == '/');
			FUZZ_CHECK(c->routes[i].plugin != NULL);
		}
		FUZZ_CHECK(sqc_config_dump(c, 0, devnull) == 0);
		sqc_config_free(c);
	}
	close(fd);
	return 0;
}
