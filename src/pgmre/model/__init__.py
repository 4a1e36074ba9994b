"""pgmre.model"""
