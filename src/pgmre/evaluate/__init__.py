"""pgmre.evaluate"""
