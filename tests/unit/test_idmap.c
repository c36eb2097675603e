/*
 * test_idmap.c - the id map the WebSocket bridge finds sessions with:
 * inserts, replaces, deletes (backward shift) and growth, checked
 * against a plain array over long random sequences with colliding keys.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#include "../../core/core.h"

TestSuite(idmap);

Test(idmap, empty_map_finds_nothing)
{
	struct sqc_idmap m = { 0 };

	cr_assert_null(sqc_idmap_get(&m, 1));
	cr_assert_null(sqc_idmap_del(&m, 1));
	sqc_idmap_free(&m);
}

Test(idmap, put_get_replace_delete)
{
	struct sqc_idmap m = { 0 };
	int a, b;

	cr_assert_eq(sqc_idmap_put(&m, 7, &a), 0);
	cr_assert_eq(sqc_idmap_get(&m, 7), &a);
	cr_assert_eq(sqc_idmap_put(&m, 7, &b), 0);
	cr_assert_eq(m.n, 1);
	cr_assert_eq(sqc_idmap_get(&m, 7), &b);
	cr_assert_eq(sqc_idmap_del(&m, 7), &b);
	cr_assert_null(sqc_idmap_get(&m, 7));
	cr_assert_eq(m.n, 0);
	sqc_idmap_free(&m);
}

/*
 * Keys from a small range, so that probes collide, wrap around the
 * table and deletions shift chains back; the reference is an array.
 */
Test(idmap, random_operations_match_a_reference)
{
	enum { KEYS = 3000, OPS = 200000 };
	static void *ref[KEYS];
	struct sqc_idmap m = { 0 };
	size_t n = 0;

	srandom(42);
	for (int op = 0; op < OPS; op++) {
		uint64_t k = 1 + (uint64_t)random() % (KEYS - 1);
		size_t i = (size_t)k;
		void *v = (void *)(uintptr_t)(op + 1);

		if (random() % 3 == 0) {
			cr_assert_eq(sqc_idmap_del(&m, k), ref[i],
			    "op %d: del %zu", op, i);
			n -= ref[i] != NULL;
			ref[i] = NULL;
		} else {
			cr_assert_eq(sqc_idmap_put(&m, k, v), 0);
			n += ref[i] == NULL;
			ref[i] = v;
		}
		cr_assert_eq(m.n, n, "op %d: %zu entries, expected %zu", op,
		    m.n, n);
		if (op % 1000 == 0)
			for (size_t j = 1; j < KEYS; j++)
				cr_assert_eq(sqc_idmap_get(&m, j), ref[j],
				    "op %d: key %zu", op, j);
	}
	for (size_t j = 1; j < KEYS; j++)
		cr_assert_eq(sqc_idmap_get(&m, j), ref[j], "key %zu", j);
	sqc_idmap_free(&m);
}

Test(idmap, pointer_keys)
{
	struct sqc_idmap m = { 0 };
	static char objs[5000][48];

	for (size_t i = 0; i < 5000; i++)
		cr_assert_eq(sqc_idmap_put(&m, (uintptr_t)objs[i], objs[i]),
		    0);
	for (size_t i = 0; i < 5000; i += 2)
		cr_assert_eq(sqc_idmap_del(&m, (uintptr_t)objs[i]), objs[i]);
	for (size_t i = 0; i < 5000; i++)
		cr_assert_eq(sqc_idmap_get(&m, (uintptr_t)objs[i]),
		    i % 2 ? objs[i] : NULL, "object %zu", i);
	sqc_idmap_free(&m);
}
