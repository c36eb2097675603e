/* nodesc - a shared object that forgot SQ_PLUGIN: no descriptor. */
#include <squall/plugin.h>

int nodesc_something(void);

int
nodesc_something(void)
{
	return 42;
}
