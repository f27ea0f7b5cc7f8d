project = 'doctor-ext Release Notes'
copyright = '2026, doctor-ext developers'
extensions = ['reno.sphinxext']
master_doc = 'index'
html_theme = 'alabaster'
