// svg.h: a small SVG heatmap writer shared by the examples. One function,
// svg_heatmap_write: a grid of cells colored by value (a sequential palette,
// or blue-white-red around zero), an optional label in each cell, labeled
// rows and columns, axis names, a title and a color scale. Plain C, no
// dependencies; the code is in svg.c, linked into every example.
#ifndef NSC_EXAMPLES_SVG_H
#define NSC_EXAMPLES_SVG_H

#include <stdbool.h>

typedef struct svg_heatmap {
    const char *title;
    const char *subtitle;          // a second line under the title, or NULL
    const char *x_label, *y_label; // axis names
    int rows, cols;
    const double *values;           // rows * cols, row-major; NAN leaves a cell grey
    const char *const *row_labels;  // rows names
    const char *const *col_labels;  // cols names
    const char *const *cell_labels; // rows * cols short texts, or NULL
    double lo, hi;                  // the color range (lo == hi: the data's range)
    bool diverging;                 // blue (lo) - white (0) - red (hi)
    const char *scale_label;        // what the colors measure
} svg_heatmap;

// Writes the heatmap to path (h and its arrays borrowed). Returns 0, or -1
// when the file cannot be written.
int svg_heatmap_write(const char *path, const svg_heatmap *h);

#endif
