"""pgmre.train"""
