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


# The chapters link to each other as plain files (`Kernels <kernels.rst>`__,
# `Memory accounting <kernels.rst#memory-accounting>`__), so that the links
# also work where the .rst sources are read on a code host; in the HTML the
# same links go to the built pages.
import re
from docutils import nodes

_RST_LINK = re.compile(r'^(?![a-z][a-z0-9+.-]*:|/)([^#]*)\.rst(#.*)?$')


def _rst_links_to_html(app, doctree, docname):
    for ref in doctree.findall(nodes.reference):
        uri = ref.get('refuri', '')
        m = _RST_LINK.match(uri)
        if m:
            ref['refuri'] = m.group(1) + '.html' + (m.group(2) or '')


def setup(app):
    app.connect('doctree-resolved', _rst_links_to_html)
    return {'parallel_read_safe': True}
