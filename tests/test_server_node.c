/*
 * The official `openai` npm client against `modserve serve` (tiny model): installs the
 * package into the build folder once (npm), then runs tests/server_clients/
 * openai_client.mjs, which asserts the shapes of chat (with an image, streaming and
 * not), completions and models. Skipped (77) without node/npm or the package.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "tests/test_server_util.h"
#include "tests/test_util.h"

int main(void) {
    if (ms_test_system("command -v node > /dev/null && command -v npm > /dev/null"))
        return ms_test_skip("test_server_node", "node or npm is not installed");
    struct stat st;
    if (stat("server_clients/node_modules/openai/package.json", &st) &&
        ms_test_system("mkdir -p server_clients && cd server_clients && "
                       "npm install --no-audit --no-fund --silent openai@4 > npm.log 2>&1"))
        return ms_test_skip("test_server_node", "npm could not install the openai package (offline?)");
    /* Node resolves packages from the script's folder upwards: run a copy placed here. */
    if (ms_test_system("cp %s/tests/server_clients/openai_client.mjs server_clients/", MS_SOURCE_DIR))
        return 1;
    size_t n;
    unsigned char *png = png_bytes(40, 30, 9, &n);
    FILE *f = fopen("server_clients/image.png", "wb");
    fwrite(png, 1, n, f);
    fclose(f);
    free(png);
    srv_proc srv;
    if (!srv_start(&srv, ms_test_tiny_model(1, "f32"), "--served-model-name tiny")) {
        fprintf(stderr, "server did not start\n");
        return 1;
    }
    const int rc = ms_test_system("node server_clients/openai_client.mjs %s tiny server_clients/image.png", srv.base);
    EXPECT(srv_stop(&srv, SIGTERM, 60) == 0);
    if (rc == 77) return ms_test_skip("test_server_node", "openai package not importable");
    EXPECTF(rc == 0, "openai client exit %d", rc);
    return ms_test_finish("test_server_node");
}
