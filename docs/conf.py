# Sphinx configuration of the compute-agent manual (Debian's python3-sphinx;
# the alabaster theme ships with it: nothing is downloaded at build time).
# Build: npm run docs (the reference tables, this manual with -W, and the
# TypeDoc API reference under _build/html/api).
project = 'compute-agent'
author = 'compute-agent contributors'
copyright = '2026, compute-agent contributors'
extensions = []
master_doc = 'index'
exclude_patterns = ['_build', '*.ts']
html_theme = 'alabaster'
html_theme_options = {'description': 'the per-node agent of a compute cluster', 'fixed_sidebar': True}
html_sidebars = {'**': ['about.html', 'navigation.html', 'searchbox.html']}
html_static_path = []
highlight_language = 'none'
