/*
 * chat_line - the pure parts of the chat plugin: the allowed_origins list
 * and the Origin check, and the lines the room hears. No libwebsockets,
 * no squall core: compiled into chat.so and into tests/fuzz/fuzz_chat.
 * Nothing here keeps state between calls; any thread may call it.
 */
#ifndef CHAT_LINE_H
#define CHAT_LINE_H

#include <stddef.h>
#include <stdint.h>

/* The origins a room lets in besides the page's own. */
struct chat_origins {
	char	**list;		/* each strdup'd, compared without case */
	size_t	  n;
	int	  any;		/* "*" was listed */
};

enum chat_event {
	CHAT_JOINED,		/* [IP] joined at WHEN */
	CHAT_SAID,		/* [IP] at WHEN: MESSAGE */
	CHAT_LEFT		/* [IP] left at WHEN */
};

int	chat_origins_add(struct chat_origins *o, const char *list);
void	chat_origins_free(struct chat_origins *o);
int	chat_origin_ok(const struct chat_origins *o, int require_origin,
	    const char *origin, const char *host);
int	chat_line(char **line, size_t *len, enum chat_event ev,
	    const char *ip, const char *when, const char *msg, size_t msglen);
int	chat_utf8_ok(const char *s, size_t len);

/* A Redis stream entry id, MS-SEQ; 0-0 is before every entry. */
struct chat_sid {
	uint64_t	ms, seq;
};
#define CHAT_SID_MAX	42	/* "MS-SEQ" and its "\0" */

int	chat_sid_parse(struct chat_sid *id, const char *s, size_t len);
int	chat_sid_cmp(const struct chat_sid *a, const struct chat_sid *b);
void	chat_sid_format(const struct chat_sid *id, char buf[CHAT_SID_MAX]);
const char *chat_line_check(const char *line, size_t len, size_t max);

#endif
