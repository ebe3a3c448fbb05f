/* http: the http:HOST:PORT endpoint (libevent's evhttp): `/` a status page with live graphs
 * (its HTML and script are built in, the graphs drawn by Debian's Chart.js, read from
 * HTTP_CHART_JS when the endpoint opens, before the sandbox), `/api/status` the status
 * document (stats.h), `/metrics` the same in Prometheus text format (metrics.h). GET and
 * HEAD only; nothing is fetched from elsewhere. Bind it to loopback: it has no access
 * control. */
#ifndef ENTROPYD_HTTP_H
#define ENTROPYD_HTTP_H

#include "endpoint.h"

/* Where Debian's libjs-chart.js installs the script the status page draws with. */
#define HTTP_CHART_JS "/usr/share/javascript/chart.js/chart.min.js"

/* http:HOST:PORT. */
extern const struct endpoint_ops http_ops;

#endif
