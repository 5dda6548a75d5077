// svg.c: a small SVG heatmap writer shared by the examples (svg.h): a grid
// of cells colored by value, labeled rows and columns, axis names, a title
// and a color scale. Plain C, no dependencies beyond libc.
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "examples/svg.h"

// Writes s with XML escapes (and a newline shown as \n).
static void svg_text(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
            case '<':
                fputs("&lt;", f);
                break;
            case '>':
                fputs("&gt;", f);
                break;
            case '&':
                fputs("&amp;", f);
                break;
            case '"':
                fputs("&quot;", f);
                break;
            case '\n':
                fputs("\\n", f);
                break;
            default:
                fputc(*s, f);
                break;
        }
    }
}

// Linear blend of palette stops (r, g, b in 0..255) at t in [0, 1].
static void svg_blend(const double (*stops)[3], int n, double t, int rgb[3]) {
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double x = t * (n - 1);
    int i = (int)x < n - 1 ? (int)x : n - 2;
    double u = x - i;
    for (int k = 0; k < 3; k++) {
        rgb[k] = (int)lround(stops[i][k] + u * (stops[i + 1][k] - stops[i][k]));
    }
}

// The color of v: viridis-like from lo to hi, or RdBu around zero.
static void svg_color(const svg_heatmap *h, double lo, double hi, double v, int rgb[3]) {
    static const double seq[][3] = {
        { 68, 1, 84 }, { 59, 82, 139 }, { 33, 145, 140 }, { 94, 201, 98 }, { 253, 231, 37 }
    };
    static const double div[][3] = {
        { 33, 102, 172 }, { 146, 197, 222 }, { 247, 247, 247 }, { 244, 165, 130 }, { 178, 24, 43 }
    };
    if (isnan(v)) {
        rgb[0] = rgb[1] = rgb[2] = 200;
        return;
    }
    if (h->diverging) {
        double m = fmax(fabs(lo), fabs(hi));
        svg_blend(div, 5, m > 0 ? 0.5 + 0.5 * v / m : 0.5, rgb);
    } else {
        svg_blend(seq, 5, hi > lo ? (v - lo) / (hi - lo) : 0.5, rgb);
    }
}

static void svg_range(const svg_heatmap *h, double *lo, double *hi) {
    *lo = h->lo;
    *hi = h->hi;
    if (h->lo != h->hi) {
        return;
    }
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int i = 0; i < h->rows * h->cols; i++) {
        if (!isnan(h->values[i])) {
            *lo = fmin(*lo, h->values[i]);
            *hi = fmax(*hi, h->values[i]);
        }
    }
    if (!(*lo < *hi)) {
        *lo = isfinite(*lo) ? *lo - 1 : 0;
        *hi = *lo + 2;
    }
}

// The vertical color bar right of the grid, with five ticks.
static void svg_scale(FILE *f, const svg_heatmap *h, double lo, double hi, int x, int y, int height,
                      int label_y) {
    const int steps = 40;
    for (int s = 0; s < steps; s++) {
        double v = hi - (hi - lo) * (s + 0.5) / steps;
        if (h->diverging) {
            double m = fmax(fabs(lo), fabs(hi));
            v = m - 2 * m * (s + 0.5) / steps;
        }
        int rgb[3];
        svg_color(h, lo, hi, v, rgb);
        fprintf(f,
                "<rect x=\"%d\" y=\"%.1f\" width=\"16\" height=\"%.1f\" fill=\"rgb(%d,%d,%d)\"/>\n",
                x, y + (double)height * s / steps, (double)height / steps + 0.5, rgb[0], rgb[1],
                rgb[2]);
    }
    fprintf(f,
            "<rect x=\"%d\" y=\"%d\" width=\"16\" height=\"%d\" fill=\"none\" "
            "stroke=\"#444\"/>\n",
            x, y, height);
    double top = h->diverging ? fmax(fabs(lo), fabs(hi)) : hi;
    double bottom = h->diverging ? -top : lo;
    for (int t = 0; t <= 4; t++) {
        double v = top - (top - bottom) * t / 4;
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" font-size=\"11\">%.3g</text>\n", x + 22,
                y + (double)height * t / 4 + 4, fabs(v) < 1e-12 ? 0.0 : v);
    }
    if (h->scale_label) {
        fprintf(f,
                "<text transform=\"translate(%d,%d) rotate(90)\" font-size=\"12\" "
                "text-anchor=\"middle\">",
                x + 64, label_y);
        svg_text(f, h->scale_label);
        fputs("</text>\n", f);
    }
}

static void svg_cells(FILE *f, const svg_heatmap *h, double lo, double hi, int left, int top,
                      int cw, int ch) {
    for (int r = 0; r < h->rows; r++) {
        for (int c = 0; c < h->cols; c++) {
            int rgb[3];
            double v = h->values[r * h->cols + c];
            svg_color(h, lo, hi, v, rgb);
            int x = left + c * cw, y = top + r * ch;
            fprintf(f,
                    "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
                    "fill=\"rgb(%d,%d,%d)\" stroke=\"white\"><title>",
                    x, y, cw, ch, rgb[0], rgb[1], rgb[2]);
            svg_text(f, h->row_labels[r]);
            fputs(", ", f);
            svg_text(f, h->col_labels[c]);
            fprintf(f, ": %.4g</title></rect>\n", v);
            const char *label = h->cell_labels ? h->cell_labels[r * h->cols + c] : NULL;
            if (label && *label) {
                double lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
                fprintf(f,
                        "<text x=\"%d\" y=\"%d\" font-size=\"%d\" text-anchor=\"middle\" "
                        "fill=\"%s\">",
                        x + cw / 2, y + ch / 2 + 4, ch > 24 ? 12 : 10,
                        lum < 128 ? "white" : "black");
                svg_text(f, label);
                fputs("</text>\n", f);
            }
        }
    }
}

static void svg_axes(FILE *f, const svg_heatmap *h, int left, int top, int cw, int ch) {
    for (int r = 0; r < h->rows; r++) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"end\">", left - 6,
                top + r * ch + ch / 2 + 4);
        svg_text(f, h->row_labels[r]);
        fputs("</text>\n", f);
    }
    int bottom = top + h->rows * ch;
    for (int c = 0; c < h->cols; c++) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">",
                left + c * cw + cw / 2, bottom + 16);
        svg_text(f, h->col_labels[c]);
        fputs("</text>\n", f);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"13\" text-anchor=\"middle\">",
            left + h->cols * cw / 2, bottom + 38);
    svg_text(f, h->x_label);
    fprintf(f,
            "</text>\n<text transform=\"translate(%d,%d) rotate(-90)\" font-size=\"13\" "
            "text-anchor=\"middle\">",
            18, top + h->rows * ch / 2);
    svg_text(f, h->y_label);
    fputs("</text>\n", f);
}

int svg_heatmap_write(const char *path, const svg_heatmap *h) {
    FILE *f = fopen(path, "w");
    if (!f) {
        return -1;
    }
    double lo, hi;
    svg_range(h, &lo, &hi);
    int longest = 4;
    for (int r = 0; r < h->rows; r++) {
        int n = (int)strlen(h->row_labels[r]);
        longest = n > longest ? n : longest;
    }
    int widest = 0; // the widest column label sets the column width
    for (int c = 0; c < h->cols; c++) {
        int n = (int)strlen(h->col_labels[c]);
        widest = n > widest ? n : widest;
    }
    int cw = h->cols > 24 ? 28 : 40, ch = 30;
    cw = 8 * widest + 12 > cw ? 8 * widest + 12 : cw;
    int left = 40 + 7 * longest, top = h->subtitle ? 64 : 48;
    int width = left + h->cols * cw + 140, height = top + h->rows * ch + 56;
    int text_px = (int)(9.5 * (double)strlen(h->title)); // the title and subtitle fit too
    if (h->subtitle && 6.5 * (double)strlen(h->subtitle) > text_px) {
        text_px = (int)(6.5 * (double)strlen(h->subtitle));
    }
    width = width > left + text_px + 20 ? width : left + text_px + 20;
    int label_px = h->scale_label ? 7 * (int)strlen(h->scale_label) : 0; // rotated: it runs down
    height = height > top + label_px + 16 ? height : top + label_px + 16;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"Helvetica, Arial, sans-serif\">\n",
            width, height, width, height);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%d\" y=\"24\" font-size=\"16\" font-weight=\"bold\">", left);
    svg_text(f, h->title);
    fputs("</text>\n", f);
    if (h->subtitle) {
        fprintf(f, "<text x=\"%d\" y=\"44\" font-size=\"12\" fill=\"#555\">", left);
        svg_text(f, h->subtitle);
        fputs("</text>\n", f);
    }
    svg_cells(f, h, lo, hi, left, top, cw, ch);
    svg_axes(f, h, left, top, cw, ch);
    svg_scale(f, h, lo, hi, left + h->cols * cw + 16, top, h->rows * ch, (top + height) / 2);
    fputs("</svg>\n", f);
    return fclose(f) == 0 ? 0 : -1;
}
