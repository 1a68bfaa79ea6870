/*
 * Synthetic chan_sip.c for astpatch's tests: shape 7 (11.23.1).
 * Not Asterisk code; only the log statements have the real wording.
 */
#include "fixture.h"

static int counter;

static void show_peer(struct ast_sockaddr *addr)
{
	char iabuf[16];
	ast_verbose("peer %s\n", ast_sockaddr_stringify(addr));
}

static int handle_response_invite(struct sip_pvt *p, int resp)
{
	if (resp == 403) {
		ast_log(LOG_NOTICE, "Failed to authenticate on INVITE to '%s'\n", sip_get_header(&p->initreq, "From"));
	}
	return 0;
}

static void receive_message(struct sip_pvt *p, struct sip_request *req, struct ast_sockaddr *addr, const char *e)
{
	int res = check_user(p, req);
	if (res < 0) {
		ast_log(LOG_NOTICE, "Failed to authenticate device %s\n", sip_get_header(req, "From"));
		counter++;
	}
	return;
}

static int handle_request_options(struct sip_pvt *p, struct sip_request *req, struct ast_sockaddr *addr, const char *e)
{
	int res = check_user(p, req);
	if (res < 0) {
		ast_log(LOG_NOTICE, "Failed to authenticate device %s\n", sip_get_header(req, "From"));
		counter++;
	}
	return 0;
}

static int handle_request_invite(struct sip_pvt *p, struct sip_request *req, struct ast_sockaddr *addr, const char *e)
{
	int res = check_user(p, req);
	if (res < 0) {
		ast_log(LOG_NOTICE, "Failed to authenticate device %s\n", sip_get_header(req, "From"));
		counter++;
	}
	return 0;
}

static int handle_request_publish(struct sip_pvt *p, struct sip_request *req, struct ast_sockaddr *addr, const char *e)
{
	int res = check_user(p, req);
	if (res < 0) {
		ast_log(LOG_NOTICE, "Failed to authenticate device %s\n", sip_get_header(req, "From"));
		counter++;
	}
	return 0;
}

static int handle_request_subscribe(struct sip_pvt *p, struct sip_request *req, struct ast_sockaddr *addr, const char *e)
{
	int res = check_user(p, req);
	if (res < 0) {
		ast_log(LOG_NOTICE, "Failed to authenticate device %s for SUBSCRIBE\n", sip_get_header(req, "From"));
		counter++;
	}
	return 0;
}

static int load_module(void)
{
	return 0;
}
/* Mantenido por José */
