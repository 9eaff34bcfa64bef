/* provision sandbox broker: a mosquitto 2.0 plugin (API v5) that makes mosquitto authorize like
 * AWS IoT Core's message broker.
 *
 * AWS IoT authorizes every MQTT action of a device with the IoT policies attached to the
 * certificate it connected with: CONNECT needs iot:Connect on client/<client id>, PUBLISH
 * iot:Publish on topic/<topic>, SUBSCRIBE iot:Subscribe on topicfilter/<filter>, and each message
 * delivered iot:Receive on topic/<topic>. mosquitto's own ACL file cannot express that (it knows
 * topics, not certificates, and cannot refuse a client id), so this plugin asks the sandbox, which
 * holds the account (moto's state) and evaluates the policies actually attached to the client's
 * certificate, ACTIVE status included (see scripts/sandbox.py, class BrokerAuthorizer).
 *
 * Protocol, one Unix-socket connection per question (the broker is single-threaded; a question
 * takes well under a millisecond):
 *   request:  ACTION SP CERT_ID SP hex(CLIENT_ID) SP hex(RESOURCE) LF
 *             ACTION = connect | publish | subscribe | receive | unsubscribe;
 *             CERT_ID = hex SHA-256 of the client certificate's DER (the AWS certificate id)
 *   answer:   "ALLOW" LF  or  "DENY" [SP reason] LF
 * Anything else (sandbox gone, timeout, garbage) denies: the broker fails closed, like AWS.
 *
 * Options (mosquitto.conf): plugin_opt_socket PATH (required).
 * Build: gcc -shared -fPIC -o authz.so authz.c -lcrypto   (headers: mosquitto-dev, libssl-dev)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/sha.h>
#include <openssl/x509.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

static mosquitto_plugin_id_t *plugin_id = NULL;
static char socket_path[108] = {0};

/* hex-encode src into a freshly malloc'd string. */
static char *hex(const unsigned char *src, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	char *out = malloc(len * 2 + 2);
	if(!out) return NULL;
	for(size_t i = 0; i < len; i++){
		out[2 * i] = digits[src[i] >> 4];
		out[2 * i + 1] = digits[src[i] & 0xf];
	}
	/* An empty field is "-" so the request always has four fields. */
	if(len == 0){
		out[0] = '-';
		out[1] = '\0';
	}else{
		out[2 * len] = '\0';
	}
	return out;
}

/* The AWS IoT certificate id of the client's certificate: hex SHA-256 of its DER. */
static int cert_id(struct mosquitto *client, char out[65])
{
	X509 *cert = mosquitto_client_certificate(client);
	unsigned char *der = NULL;
	unsigned char md[SHA256_DIGEST_LENGTH];
	int len;
	if(!cert) return -1;
	len = i2d_X509(cert, &der);
	X509_free(cert);
	if(len <= 0) return -1;
	SHA256(der, (size_t)len, md);
	OPENSSL_free(der);
	for(int i = 0; i < SHA256_DIGEST_LENGTH; i++){
		sprintf(out + 2 * i, "%02x", md[i]);
	}
	out[64] = '\0';
	return 0;
}

/* Ask the sandbox. Returns MOSQ_ERR_SUCCESS when allowed, else `deny_rc`. */
static int ask(const char *action, struct mosquitto *client, const char *resource, int deny_rc)
{
	char id[65];
	const char *client_id = mosquitto_client_id(client);
	char *hid = NULL, *hres = NULL, *req = NULL;
	char answer[512];
	size_t got = 0;
	int fd = -1, rc = deny_rc;
	struct sockaddr_un addr;
	struct timeval tv = {5, 0};

	if(cert_id(client, id) != 0){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "authz: %s denied: no client certificate", action);
		return deny_rc;
	}
	hid = hex((const unsigned char *)(client_id ? client_id : ""), client_id ? strlen(client_id) : 0);
	hres = hex((const unsigned char *)(resource ? resource : ""), resource ? strlen(resource) : 0);
	if(!hid || !hres) goto done;
	req = malloc(strlen(action) + strlen(id) + strlen(hid) + strlen(hres) + 8);
	if(!req) goto done;
	sprintf(req, "%s %s %s %s\n", action, id, hid, hres);

	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if(fd < 0) goto done;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	memcpy(addr.sun_path, socket_path, sizeof(addr.sun_path));
	if(connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0){
		mosquitto_log_printf(MOSQ_LOG_ERR, "authz: cannot reach the sandbox at %s: %s", socket_path, strerror(errno));
		goto done;
	}
	if(write(fd, req, strlen(req)) != (ssize_t)strlen(req)) goto done;
	while(got < sizeof(answer) - 1){
		ssize_t n = read(fd, answer + got, sizeof(answer) - 1 - got);
		if(n <= 0) break;
		got += (size_t)n;
		if(memchr(answer, '\n', got)) break;
	}
	answer[got] = '\0';
	if(strncmp(answer, "ALLOW\n", 6) == 0){
		rc = MOSQ_ERR_SUCCESS;
	}else{
		char *nl = strchr(answer, '\n');
		if(nl) *nl = '\0';
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "authz: %s by %s on %s: %s", action,
				client_id ? client_id : "?", resource ? resource : "-", got ? answer : "no answer");
	}
done:
	if(fd >= 0) close(fd);
	free(hid);
	free(hres);
	free(req);
	return rc;
}

/* CONNECT: AWS checks iot:Connect on client/<client id> (and that the certificate is ACTIVE). */
static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	(void)event;
	(void)userdata;
	return ask("connect", ed->client, mosquitto_client_id(ed->client), MOSQ_ERR_AUTH);
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	const char *action;
	(void)event;
	(void)userdata;
	switch(ed->access){
		case MOSQ_ACL_WRITE: action = "publish"; break;     /* iot:Publish, topic/<topic> */
		case MOSQ_ACL_READ: action = "receive"; break;      /* iot:Receive, topic/<topic> */
		case MOSQ_ACL_SUBSCRIBE: action = "subscribe"; break; /* iot:Subscribe, topicfilter/<filter> */
		case MOSQ_ACL_UNSUBSCRIBE: return MOSQ_ERR_SUCCESS; /* AWS does not authorize UNSUBSCRIBE */
		default: return MOSQ_ERR_ACL_DENIED;
	}
	return ask(action, ed->client, ed->topic, MOSQ_ERR_ACL_DENIED);
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **user_data, struct mosquitto_opt *opts, int opt_count)
{
	(void)user_data;
	plugin_id = identifier;
	for(int i = 0; i < opt_count; i++){
		if(strcmp(opts[i].key, "socket") == 0){
			strncpy(socket_path, opts[i].value, sizeof(socket_path) - 1);
		}
	}
	if(socket_path[0] == '\0'){
		mosquitto_log_printf(MOSQ_LOG_ERR, "authz: plugin_opt_socket is required");
		return MOSQ_ERR_INVAL;
	}
	if(mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL)) return MOSQ_ERR_UNKNOWN;
	if(mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL)) return MOSQ_ERR_UNKNOWN;
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *user_data, struct mosquitto_opt *opts, int opt_count)
{
	(void)user_data;
	(void)opts;
	(void)opt_count;
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	return MOSQ_ERR_SUCCESS;
}
