/*
 * replay.c - main() of the make check build of a fuzz target: runs
 * LLVMFuzzerTestOneInput once on every file of the folders (or files)
 * given, each in a buffer of exactly its size, so that an
 * --enable-sanitizers build catches reads past the end. Exits non-zero
 * when a folder cannot be read; a failing input aborts.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int
run_file(const char *path)
{
	FILE *fp;
	struct stat st;
	uint8_t *buf;
	size_t n;

	if ((fp = fopen(path, "rb")) == NULL || fstat(fileno(fp), &st) != 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		if (fp)
			fclose(fp);
		return -1;
	}
	/* malloc(0) may be NULL: one byte more, never read */
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
		fclose(fp);
		return -1;
	}
	n = fread(buf, 1, (size_t)st.st_size, fp);
	fclose(fp);
	if (n != (size_t)st.st_size) {
		fprintf(stderr, "%s: short read\n", path);
		free(buf);
		return -1;
	}
	/* exactly n bytes, like libFuzzer's copy */
	if ((buf = realloc(buf, n ? n : 1)) == NULL)
		return -1;
	LLVMFuzzerTestOneInput(buf, n);
	free(buf);
	return 0;
}

int
main(int argc, char **argv)
{
	int failed = 0, runs = 0;

	for (int i = 1; i < argc; i++) {
		struct dirent **names;
		struct stat st;
		int n;

		if (stat(argv[i], &st) != 0) {
			fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
			failed = 1;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			failed |= run_file(argv[i]) != 0;
			runs++;
			continue;
		}
		if ((n = scandir(argv[i], &names, NULL, alphasort)) < 0) {
			fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
			failed = 1;
			continue;
		}
		for (int j = 0; j < n; j++) {
			char *path;

			if (names[j]->d_name[0] != '.' &&
			    asprintf(&path, "%s/%s", argv[i],
			    names[j]->d_name) >= 0) {
				failed |= run_file(path) != 0;
				runs++;
				free(path);
			}
			free(names[j]);
		}
		free(names);
	}
	printf("%s: %d inputs replayed%s\n", argc > 0 ? argv[0] : "replay",
	    runs, failed ? ", some unreadable" : "");
	return failed;
}
