/*
 * plugin_priv.h - what the plugin side of the core shares: the module
 * (one version of one plugin file), the instance (a plugin's state for
 * one route), the generation (the routing table of one configuration)
 * and a plugin's options during .create. Private to loader.c (modules),
 * plugin.c (instances, options, the calls into plugins) and gen.c
 * (generations). Loop thread only.
 */
#ifndef SQUALL_PLUGIN_PRIV_H
#define SQUALL_PLUGIN_PRIV_H

#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "core.h"

struct sqc_module {
	char		*path;		/* as configured */
	char		*copy;		/* the private copy that is mapped */
	uint64_t	 hash;		/* FNV-1a of the bytes */
	off_t		 size;
	void		*dl;
	const struct sq_plugin *desc;
	unsigned	 refs;
	LIST_ENTRY(sqc_module) link;
};

/* An instance: private to this file, plugins and the rest of the core
 * hold pointers. */
struct sq_inst {
	char		*route;
	struct sqc_module *mod;
	const struct sq_plugin *desc;
	void		*state;
	unsigned	 refs;
	/* identity for reuse across reloads */
	struct sqc_opt	*opts;
	size_t		 nopts;
	char		 note[192];	/* "plugin P V, route R", for a crash */
	struct sq_route_stats counts;	/* kept by the sqc_call_* wrappers */
	struct sqc_opt	*info;		/* sq_inst_set_info's pairs */
	size_t		 ninfo;
};

struct sqc_gen {
	struct sqc_router *router;
	struct sq_inst	**insts;
	int		*ws_deflate;	/* the route keys, by insts' index */
	size_t		 ninsts;
	size_t		 reused;
};

struct sq_opts {
	struct sqc_config *conf;
	struct sqc_route_conf *route;
	char		*err;
	size_t		 errlen;
	int		 failed;
};

/* ---- loader.c --------------------------------------------------------- */

struct sqc_module *sqc_module_get(const char *path, char *err,
	    size_t errlen);
void	 sqc_module_unref(struct sqc_module *m);

/* ---- plugin.c --------------------------------------------------------- */

int	 sqc_opts_fail_at(struct sq_opts *o, int line, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
void	 sqc_inst_free(struct sq_inst *inst);
void	 sqc_inst_note_init(struct sq_inst *inst);

#endif /* SQUALL_PLUGIN_PRIV_H */
