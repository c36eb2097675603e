/*
 * idmap.c - a map from non-zero 64-bit keys (session ids, pointers) to
 * pointers: open addressing with linear probing, grown at half full,
 * deletion by backward shift, so no tombstones. Lookups touch one or
 * two cache lines whatever the number of entries, which the WebSocket
 * bridge needs once per recipient of every message. Not thread-safe:
 * each map belongs to one thread.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "core.h"

#define MIN_CAP	64

static size_t
slot_of(const struct sqc_idmap *m, uint64_t key)
{
	/* Fibonacci hashing: ids are sequential, pointers are aligned */
	return (size_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & (m->cap - 1);
}

static int
grow(struct sqc_idmap *m)
{
	struct sqc_idmap n = { 0 };

	n.cap = m->cap ? m->cap * 2 : MIN_CAP;
	if ((n.slots = calloc(n.cap, sizeof(*n.slots))) == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < m->cap; i++)
		if (m->slots[i].key != 0) {
			size_t j = slot_of(&n, m->slots[i].key);

			while (n.slots[j].key != 0)
				j = (j + 1) & (n.cap - 1);
			n.slots[j] = m->slots[i];
		}
	n.n = m->n;
	free(m->slots);
	*m = n;
	return 0;
}

/* The value of key, or NULL. */
void *
sqc_idmap_get(const struct sqc_idmap *m, uint64_t key)
{
	if (m->n == 0)
		return NULL;
	for (size_t i = slot_of(m, key);; i = (i + 1) & (m->cap - 1)) {
		if (m->slots[i].key == key)
			return m->slots[i].val;
		if (m->slots[i].key == 0)
			return NULL;
	}
}

/* Makes room for extra more entries: puts up to that many cannot fail. */
int
sqc_idmap_reserve(struct sqc_idmap *m, size_t extra)
{
	while (2 * (m->n + extra) > m->cap)
		if (grow(m) != 0)
			return -ENOMEM;
	return 0;
}

/* Sets key (non-zero) to val, replacing any value. 0 or -ENOMEM. */
int
sqc_idmap_put(struct sqc_idmap *m, uint64_t key, void *val)
{
	size_t i;

	if (sqc_idmap_reserve(m, 1) != 0)
		return -ENOMEM;
	for (i = slot_of(m, key); m->slots[i].key != 0;
	    i = (i + 1) & (m->cap - 1))
		if (m->slots[i].key == key) {
			m->slots[i].val = val;
			return 0;
		}
	m->slots[i].key = key;
	m->slots[i].val = val;
	m->n++;
	return 0;
}

/* Removes key; returns its value, or NULL if it was not there. */
void *
sqc_idmap_del(struct sqc_idmap *m, uint64_t key)
{
	size_t i, j, home;
	void *val;

	if (m->n == 0)
		return NULL;
	for (i = slot_of(m, key); m->slots[i].key != key;
	    i = (i + 1) & (m->cap - 1))
		if (m->slots[i].key == 0)
			return NULL;
	val = m->slots[i].val;
	m->n--;
	/* pull back the entries whose probe passed through slot i */
	for (j = (i + 1) & (m->cap - 1); m->slots[j].key != 0;
	    j = (j + 1) & (m->cap - 1)) {
		home = slot_of(m, m->slots[j].key);
		if (((j - home) & (m->cap - 1)) >= ((j - i) & (m->cap - 1))) {
			m->slots[i] = m->slots[j];
			i = j;
		}
	}
	m->slots[i].key = 0;
	m->slots[i].val = NULL;
	return val;
}

/* Frees the map's table (not the values); the map is empty again. */
void
sqc_idmap_free(struct sqc_idmap *m)
{
	free(m->slots);
	m->slots = NULL;
	m->cap = m->n = 0;
}
