"""pgmre.explain"""
