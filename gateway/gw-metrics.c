#include "gw-metrics.h"

int gw_metrics_render(const gw_metrics_t *m, const char *gateway_id, chat_buf_t *out)
{
    int rc = 0;
#define GW_METRIC_RENDER(name, type, help)                                                         \
    if (rc == 0)                                                                                   \
        rc = chat_buf_printf(out,                                                                  \
                             "# HELP chat_gateway_" #name " " help "\n# TYPE chat_gateway_" #name  \
                             " " #type "\nchat_gateway_" #name "{gateway=\"%s\"} %llu\n",          \
                             gateway_id, (unsigned long long)m->name);
    GW_METRICS(GW_METRIC_RENDER)
#undef GW_METRIC_RENDER
    return rc;
}
