"""pgmre.serve"""
