/* stream/testpattern.c - deterministic diagnostic frames (see testpattern.h).
 *
 * Everything is integer arithmetic on the frame number, so a frame can be redrawn bit for bit
 * anywhere (tests compare against a redraw). Drawing is a handful of clipped rectangle fills. */
#include "stream/testpattern.h"

#include <stddef.h>
#include <string.h>

typedef struct canvas {
    uint8_t *rgb;
    int w, h;
} canvas;

/* Fills [x0, x0+cw) x [y0, y0+ch), clipped to the canvas. */
static void fill_rect(const canvas *c, int x0, int y0, int cw, int ch, const uint8_t col[3]) {
    int x1 = x0 + cw, y1 = y0 + ch;
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > c->w) x1 = c->w;
    if (y1 > c->h) y1 = c->h;
    for (int y = y0; y < y1; y++) {
        uint8_t *p = c->rgb + ((size_t)y * c->w + x0) * 3;
        for (int x = x0; x < x1; x++, p += 3) {
            p[0] = col[0];
            p[1] = col[1];
            p[2] = col[2];
        }
    }
}

static const uint8_t WHITE[3] = {255, 255, 255};
static const uint8_t BLACK[3] = {0, 0, 0};

/* The classic bar order, full intensity so each bar is a corner of the RGB cube. */
static const uint8_t BARS[8][3] = {
    {255, 255, 255}, {255, 255, 0}, {0, 255, 255}, {0, 255, 0},
    {255, 0, 255},   {255, 0, 0},   {0, 0, 255},   {0, 0, 0},
};

/* 7-segment glyphs, bit i = segment "abcdefg"[i]: a top, b top right, c bottom right,
 * d bottom, e bottom left, f top left, g middle. */
static const uint8_t SEGMENTS[10] = {0x3F, 0x06, 0x5B, 0x4F, 0x66, 0x6D, 0x7D, 0x07, 0x7F, 0x6F};

/* Geometry of one line of 7-segment text: glyph height h, glyph width h/2, stroke t. */
typedef struct font {
    int h, w, t;
} font;

static font font_for_height(int h) {
    font f;
    f.h = h < 5 ? 5 : h;
    f.w = f.h / 2;
    f.t = f.h / 10 < 1 ? 1 : f.h / 10;
    return f;
}

static int advance(const font *f, char ch) {
    if (ch == ':' || ch == '.') return 3 * f->t;
    return f->w + 2 * f->t;
}

static int text_width(const font *f, const char *s) {
    int n = 0;
    for (; *s; s++) n += advance(f, *s);
    return n;
}

/* Draws one glyph with its top-left corner at (x, y); returns the x of the next glyph. */
static int draw_glyph(const canvas *c, const font *f, int x, int y, char ch, const uint8_t *col) {
    int t = f->t, w = f->w, h = f->h, half = h / 2;
    if (ch == ':') {
        fill_rect(c, x + t, y + h / 4, t, t, col);
        fill_rect(c, x + t, y + 3 * h / 4 - t, t, t, col);
    } else if (ch == '.') {
        fill_rect(c, x + t, y + h - t, t, t, col);
    } else if (ch >= '0' && ch <= '9') {
        uint8_t m = SEGMENTS[ch - '0'];
        if (m & 0x01) fill_rect(c, x, y, w, t, col);                          /* a */
        if (m & 0x02) fill_rect(c, x + w - t, y, t, half + t / 2 + 1, col);   /* b */
        if (m & 0x04) fill_rect(c, x + w - t, y + half, t, h - half, col);    /* c */
        if (m & 0x08) fill_rect(c, x, y + h - t, w, t, col);                  /* d */
        if (m & 0x10) fill_rect(c, x, y + half, t, h - half, col);            /* e */
        if (m & 0x20) fill_rect(c, x, y, t, half + t / 2 + 1, col);           /* f */
        if (m & 0x40) fill_rect(c, x, y + half - t / 2, w, t, col);           /* g */
    }
    return x + advance(f, ch);
}

/* Draws `s` centred horizontally at row y on a black plate with a margin of one stroke. */
static void draw_text_centred(const canvas *c, const font *f, int y, const char *s) {
    int tw = text_width(f, s);
    int x = (c->w - tw) / 2;
    fill_rect(c, x - 2 * f->t, y - 2 * f->t, tw + 3 * f->t, f->h + 4 * f->t, BLACK);
    for (; *s; s++) x = draw_glyph(c, f, x, y, *s, WHITE);
}

/* Formats v in decimal into buf (at least 11 bytes); returns buf. */
static char *format_u32(uint32_t v, char *buf) {
    char tmp[11];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
    buf[n] = 0;
    return buf;
}

/* Two digits of v (mod 100) into p. */
static void put2(char *p, unsigned v) {
    p[0] = (char)('0' + v / 10 % 10);
    p[1] = (char)('0' + v % 10);
}

int fb_testpattern_cell_size(int width, int height) {
    int cell = width / FB_TESTPATTERN_COUNTER_BITS;
    if (cell > height / 4) cell = height / 4;
    if (cell > 16) cell = 16;
    if (cell < 2) cell = 2;
    return cell;
}

static int valid_size(int width, int height) {
    return width >= FB_TESTPATTERN_MIN_SIZE && height >= FB_TESTPATTERN_MIN_SIZE &&
           width <= FB_TESTPATTERN_MAX_SIZE && height <= FB_TESTPATTERN_MAX_SIZE &&
           width % 2 == 0 && height % 2 == 0;
}

fb_testpattern_status fb_testpattern_draw(uint8_t *rgb, int width, int height, uint32_t frame_no,
                                          int fps) {
    if (!valid_size(width, height)) return FB_TESTPATTERN_ERR_SIZE;
    if (!rgb || fps < 1 || fps > 1000) return FB_TESTPATTERN_ERR_ARG;
    const canvas c = {rgb, width, height};
    int band_y = height * 3 / 4; /* bars above, grey ramp below */

    /* Colour bars scrolling left by ~1/128 of the width per frame, and under them a grey ramp
     * (one 0..255 sweep across the width) sliding 4 levels per frame. Each band is drawn as one
     * row and copied down, which keeps the writes sequential. */
    int step = width / 128 < 1 ? 1 : width / 128;
    int shift = (int)((uint64_t)frame_no * (uint64_t)step % (uint64_t)width);
    size_t row_bytes = (size_t)width * 3;
    uint8_t *bar_row = rgb, *ramp_row = rgb + (size_t)band_y * row_bytes;
    for (int x = 0; x < width; x++) {
        const uint8_t *col = BARS[(int)((int64_t)((x + shift) % width) * 8 / width)];
        uint8_t g = (uint8_t)((unsigned)(x * 256 / width) + frame_no * 4u);
        memcpy(bar_row + 3 * x, col, 3);
        memset(ramp_row + 3 * x, g, 3);
    }
    for (int y = 1; y < band_y; y++) memcpy(rgb + (size_t)y * row_bytes, bar_row, row_bytes);
    for (int y = band_y + 1; y < height; y++)
        memcpy(rgb + (size_t)y * row_bytes, ramp_row, row_bytes);

    /* A square bouncing across the bar area (a triangle wave, period 2 * travel frames). */
    int side = height / 8 < 2 ? 2 : height / 8;
    int travel = width - side;
    int pos = (int)(frame_no % (uint32_t)(2 * travel));
    if (pos > travel) pos = 2 * travel - pos;
    const uint8_t orange[3] = {255, 128, 0};
    fill_rect(&c, pos, band_y - side - side / 2, side, side, orange);

    /* Frame number, large, and the clock under it. */
    char num[11], clock[13];
    format_u32(frame_no, num);
    uint64_t ms = (uint64_t)frame_no * 1000u / (uint64_t)fps;
    put2(clock, (unsigned)(ms / 3600000u % 100u));
    clock[2] = ':';
    put2(clock + 3, (unsigned)(ms / 60000u % 60u));
    clock[5] = ':';
    put2(clock + 6, (unsigned)(ms / 1000u % 60u));
    clock[8] = '.';
    clock[9] = (char)('0' + ms / 100u % 10u);
    put2(clock + 10, (unsigned)(ms % 100u));
    clock[12] = 0;

    font big = font_for_height(height / 4);
    while (big.h > 5 && text_width(&big, num) + 4 * big.t > width) big = font_for_height(big.h - 1);
    font small = font_for_height(big.h / 2);
    while (small.h > 5 && text_width(&small, clock) + 4 * small.t > width)
        small = font_for_height(small.h - 1);
    int y_num = height * 3 / 8 - big.h / 2;
    draw_text_centred(&c, &big, y_num, num);
    draw_text_centred(&c, &small, y_num + big.h + 5 * big.t, clock);

    /* Block code last, so nothing overdraws it. */
    int cell = fb_testpattern_cell_size(width, height);
    for (int i = 0; i < FB_TESTPATTERN_COUNTER_BITS; i++) {
        int bit = (frame_no >> (FB_TESTPATTERN_COUNTER_BITS - 1 - i)) & 1;
        fill_rect(&c, i * cell, 0, cell, cell, bit ? WHITE : BLACK);
        fill_rect(&c, i * cell, cell, cell, cell, bit ? BLACK : WHITE);
    }
    return FB_TESTPATTERN_OK;
}

/* Mean luma-ish brightness ((R + 2G + B) / 4) of the inner half of a cell, away from edges that
 * compression blurs. */
static int cell_mean(const uint8_t *rgb, int width, int x0, int y0, int cell) {
    int m = cell / 4, n = 0;
    long sum = 0;
    for (int y = y0 + m; y < y0 + cell - m; y++) {
        const uint8_t *p = rgb + ((size_t)y * width + x0 + m) * 3;
        for (int x = x0 + m; x < x0 + cell - m; x++, p += 3, n++)
            sum += (p[0] + 2 * p[1] + p[2]) / 4;
    }
    return n ? (int)(sum / n) : 0;
}

int32_t fb_testpattern_read_counter(const uint8_t *rgb, int width, int height) {
    if (!rgb || !valid_size(width, height)) return -1;
    int cell = fb_testpattern_cell_size(width, height);
    int32_t v = 0;
    for (int i = 0; i < FB_TESTPATTERN_COUNTER_BITS; i++) {
        int top = cell_mean(rgb, width, i * cell, 0, cell);
        int bottom = cell_mean(rgb, width, i * cell, cell, cell);
        /* A real cell pair is one light, one dark; demand a clear gap and each on its own side
         * of mid-grey so a flat or noisy picture reads as "no counter". */
        if (top - bottom > 96 && top > 128 && bottom < 128) v = (v << 1) | 1;
        else if (bottom - top > 96 && bottom > 128 && top < 128) v = v << 1;
        else return -1;
    }
    return v;
}

const char *fb_testpattern_status_str(fb_testpattern_status s) {
    switch (s) {
    case FB_TESTPATTERN_OK: return "ok";
    case FB_TESTPATTERN_ERR_ARG: return "invalid argument (NULL buffer or fps outside 1..1000)";
    case FB_TESTPATTERN_ERR_SIZE:
        return "width and height must be even and within 32..8192";
    }
    return "unknown test pattern status";
}
