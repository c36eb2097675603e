/* nohandler - a descriptor with neither handle nor ws_open. */
#include <squall/plugin.h>

SQ_PLUGIN(.name = "nohandler", .version = "0");
