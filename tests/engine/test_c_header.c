/* engine.h compiles on its own as C11 with -Wall -Wextra, and its names link. */
#include "engine/engine.h"

#include <stdio.h>
#include <string.h>

int main(void)
{
    fb_model_params p = fb_model_default_params();
    int bad = 0;
    bad |= p.max_streams < 1;
    bad |= strcmp(fb_status_str(FB_OK), "ok") != 0;
    bad |= fb_status_str((fb_status)-999) == NULL;
    for (int st = FB_OK; st >= FB_E_INTERNAL; st--)
        bad |= fb_status_str((fb_status)st)[0] == '\0';
    if (bad) {
        fprintf(stderr, "engine.h basics failed\n");
        return 1;
    }
    printf("ok\n");
    return 0;
}
